"""The CLI's one error layer: any exception -> one `error:` line with the fix, and a documented exit status.

Applied once, around the whole Typer app (:class:`CliGroup` is the root group's class), so commands
raise and never catch: `reasongen.errors` classes carry their own exit status, and the library
exceptions a user can meet (database, Redis, missing extras, bad settings) are mapped here. The
traceback is printed only with `reasongen --debug ...` or REASONGEN_DEBUG=1. The exit statuses are the
README's "Exit codes" table (reasongen.errors.ExitCode).
"""

from __future__ import annotations

import inspect
import os
import sys
import traceback
from typing import Any

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from reasongen.errors import EXTRAS, ExitCode, ReasongenError, missing_extra

DEBUG_ENV = "REASONGEN_DEBUG"


def print_error(message: str, console: Console | None = None) -> None:
    """`error: message` on stderr, never wrapped or read as markup (messages hold [extras] and paths)."""
    out = console or Console(stderr=True)
    out.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True, highlight=False)


def classify(exc: BaseException, settings: Any = None) -> tuple[ExitCode, str]:
    """The exit status and the one-line message (with the fix) for ``exc``."""
    if isinstance(exc, ReasongenError):
        return exc.exit_code, str(exc)
    for mapper in (_database, _service, _review, _import, _settings):
        found = mapper(exc, settings)
        if found is not None:
            return found
    if isinstance(exc, LookupError) and not isinstance(exc, (KeyError, IndexError)):
        return ExitCode.NOT_FOUND, str(exc)
    if isinstance(exc, ValueError):
        return ExitCode.BAD_INPUT, str(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        return ExitCode.BAD_INPUT, f"{exc.filename}: {exc.strerror or exc}"
    if isinstance(exc, FileNotFoundError):
        return ExitCode.BAD_INPUT, str(exc)
    if isinstance(exc, RuntimeError) and not isinstance(exc, (NotImplementedError, RecursionError)):
        return ExitCode.SOME_FAILED, str(exc).strip()  # services' own refusals, written for the user
    return ExitCode.INTERNAL, (f"unexpected {type(exc).__name__}: {_first_line(exc)} This is a bug: run again "
                               f"with --debug (or {DEBUG_ENV}=1) for the traceback and report it")


def _database(exc: BaseException, settings: Any) -> tuple[ExitCode, str] | None:
    from sqlalchemy import exc as sa

    from storage.migrate import SchemaMissingError

    where = _safe_url(getattr(settings, "database_url", None))
    if isinstance(exc, SchemaMissingError):
        return ExitCode.DATABASE, str(exc)
    if isinstance(exc, (sa.ArgumentError, sa.NoSuchModuleError)):
        return ExitCode.DATABASE, (f"invalid database URL {where}: {_first_line(exc)} Set REASONGEN_DATABASE_URL "
                                   "(or --database-url) to e.g. postgresql://user@host:5432/reasongen or "
                                   "sqlite:///reasongen.db")
    if not isinstance(exc, (sa.OperationalError, sa.InterfaceError)):
        return None
    reason = _driver_reason(exc)
    if "does not exist" in reason and "database" in reason:
        name = _database_name(getattr(settings, "database_url", None)) or "NAME"
        fix = f"create it (e.g. createdb {name}, or CREATE DATABASE in psql), then run: reasongen db upgrade"
        return ExitCode.DATABASE, f"the database {where} does not exist ({reason.rstrip('.')}); {fix}"
    if any(s in reason for s in ("no such table", "no such column", "has no column named", "does not exist")):
        return ExitCode.DATABASE, (f"the database {where} has an older schema ({reason.rstrip('.')}); "
                                   "bring it up to date with: reasongen db upgrade")
    return ExitCode.DATABASE, (f"cannot use the database {where}: {reason} Check that the server is running and "
                               "that REASONGEN_DATABASE_URL (or --database-url) points at it")


def _service(exc: BaseException, settings: Any) -> tuple[ExitCode, str] | None:
    import redis.exceptions
    from kombu.exceptions import OperationalError as KombuOperationalError

    if not isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                            KombuOperationalError)):
        return None
    url = getattr(settings, "redis_url", None) or getattr(settings, "broker_url", None)
    return ExitCode.SERVICE, (f"cannot reach Redis{' at ' + _safe_url(url) if url else ''}: {_first_line(exc)} "
                              "Start Redis, or point REASONGEN_BROKER_URL (and REASONGEN_REDIS_URL) at a running one")


def _review(exc: BaseException, settings: Any) -> tuple[ExitCode, str] | None:
    from review.rules import ConflictError, IllegalTransitionError

    if isinstance(exc, (ConflictError, IllegalTransitionError)):
        return ExitCode.CONFLICT, str(exc)
    return None


def _import(exc: BaseException, settings: Any) -> tuple[ExitCode, str] | None:
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in EXTRAS:
        return ExitCode.MISSING_EXTRA, str(missing_extra(exc.name or ""))
    return None


def _settings(exc: BaseException, settings: Any) -> tuple[ExitCode, str] | None:
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return None
    problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors())
    return ExitCode.BAD_INPUT, f"invalid setting ({problems}); fix the option, the environment variable or .env"


def _driver_reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = " ".join(str(orig).split())
    text = text.removeprefix("connection failed: ").split(" (Background on this error")[0].split(" [SQL: ")[0]
    return _sentence(text)


def _sentence(text: str) -> str:
    return text if text.endswith((".", "?", "!")) else text + "."


def _database_name(url: str | None) -> str | None:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).database if url else None
    except Exception:  # noqa: BLE001 - only a nicer hint
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return _sentence(text.splitlines()[0]) if text else type(exc).__name__ + "."


def _safe_url(url: str | None) -> str:
    if not url:
        return "(unset)"
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as given, minus anything after '@'-credentials
        return url.split("@")[-1] if "@" in url else url


def debug_enabled(ctx: typer.Context | None) -> bool:
    if ctx is not None and ctx.find_root().params.get("debug"):
        return True
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def handle(exc: BaseException, ctx: typer.Context | None) -> int:
    """Print the error (and the traceback with --debug); return the exit status."""
    root = ctx.find_root() if ctx is not None else None
    code, message = classify(exc, getattr(root, "obj", None))
    if debug_enabled(ctx):
        traceback.print_exception(exc, file=sys.stderr)
    print_error(message)
    return int(code)


class CliGroup(TyperGroup):
    """The root group: runs every command inside the error layer; shows boolean flags as flags in --help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _flags_without_type(self)

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # a command's own exit status, and usage errors (exit 2), pass through
        except KeyboardInterrupt:
            print_error("interrupted")
            raise typer.Exit(ExitCode.INTERRUPTED) from None
        except BrokenPipeError:
            raise  # `reasongen ... | head`: click's main() ends quietly on EPIPE (status 1); not a bug of ours
        except Exception as exc:  # noqa: BLE001 - this is the one place errors become messages
            raise typer.Exit(handle(exc, ctx)) from None


def _flags_without_type(command: Any) -> None:
    """Typer 0.29's rich help prints a flag's type (`--dry-run <bool>`), as if it took a value: every flag
    (--help and the completion flags included, which Typer adds late) gets an empty metavar when help is shown."""
    get_params = command.get_params

    def flags_as_flags(ctx: Any) -> Any:
        params = get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params

    command.get_params = flags_as_flags
    if getattr(command, "help", None):
        command.help = unwrap_help(command.help)
    for sub in getattr(command, "commands", {}).values():
        _flags_without_type(sub)


def unwrap_help(text: str) -> str:
    """Docstrings are wrapped at 120 columns in the source; Typer keeps those line breaks, so help read at 80
    columns came out ragged. Lines of a paragraph are joined (Rich re-wraps them to the terminal); blank lines,
    list items and indented lines keep their breaks."""
    lines = inspect.cleandoc(text).splitlines()
    out: list[str] = []
    for line in lines:
        joinable = out and _plain(out[-1]) and _plain(line)
        if joinable:
            out[-1] = f"{out[-1].rstrip()} {line.strip()}"
        else:
            out.append(line)
    return "\n".join(out)


def _plain(line: str) -> bool:
    """A line of running text: not blank, not indented, not a list item."""
    return bool(line.strip()) and not line[:1].isspace() and not _item(line)


def _item(line: str) -> bool:
    head = line.lstrip()[:3]
    return head[:2] in ("- ", "* ", "• ") or (head[:1].isdigit() and head[1:2] in (".", ")"))

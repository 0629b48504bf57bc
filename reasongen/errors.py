"""Errors a user can act on, each with the exit status the CLI gives it.

Services raise these (or the existing LookupError / ValueError subclasses, which the CLI maps the
same way); the CLI's one error layer (cli/errors.py) turns any of them into one ``error:`` line and the
exit status below. The message is the whole story: say what is wrong and how to fix it.

Exit statuses (README "Exit codes"):
    0 success · 1 some items failed · 2 bad input · 3 conflict · 4 not found · 5 database unavailable
    6 service unavailable (broker, Redis, teacher endpoint) · 7 missing extra · 70 internal error · 130 interrupted
"""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar


class ExitCode(IntEnum):
    OK = 0
    SOME_FAILED = 1
    BAD_INPUT = 2
    CONFLICT = 3
    NOT_FOUND = 4
    DATABASE = 5
    SERVICE = 6
    MISSING_EXTRA = 7
    INTERNAL = 70
    INTERRUPTED = 130


class ReasongenError(Exception):
    """Base: a failure the user can fix; ``str(exc)`` says what and how."""

    exit_code: ClassVar[ExitCode] = ExitCode.SOME_FAILED


class SomeFailed(ReasongenError):
    """The command ran, but some of its items failed (each reported already)."""

    exit_code = ExitCode.SOME_FAILED


class InvalidInput(ReasongenError, ValueError):
    """A bad option, value, filter, file or setting."""

    exit_code = ExitCode.BAD_INPUT


class Conflict(ReasongenError):
    """The object changed since it was loaded, or its state does not allow the action."""

    exit_code = ExitCode.CONFLICT


class NotFound(ReasongenError, LookupError):
    """No such draft, dataset, batch, build, run, template, user..."""

    exit_code = ExitCode.NOT_FOUND


class DatabaseUnavailable(ReasongenError):
    """The database cannot be reached, does not exist, or has no (current) schema."""

    exit_code = ExitCode.DATABASE


class ServiceUnavailable(ReasongenError):
    """The broker / Redis or another service the command needs cannot be reached."""

    exit_code = ExitCode.SERVICE


class MissingExtra(ReasongenError, ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""

    exit_code = ExitCode.MISSING_EXTRA


# Optional modules -> the extras that install them (pyproject.toml [project.optional-dependencies]).
EXTRAS: dict[str, tuple[str, ...]] = {
    "torch": ("local", "train"), "transformers": ("local", "train"), "tokenizers": ("local", "train"),
    "trl": ("train",), "peft": ("train",), "datasets": ("train",), "accelerate": ("train",),
    "matplotlib": ("train",), "flower": ("all",),
}


def install_hint(extra: str) -> str:
    return f"bash scripts/install.sh {extra}   (or: pip install 'reasongen[{extra}]')"


def missing_extra(module: str, what: str | None = None, extra: str | None = None) -> MissingExtra:
    """The error for an optional module that is not installed, naming the extra that brings it."""
    root = module.split(".")[0]
    extras = (extra,) if extra else EXTRAS.get(root, ("all",))
    named = " or ".join(f"'{e}'" for e in extras)
    return MissingExtra(f"{what or 'this command'} needs {root}, which is not installed (it comes with the {named} "
                        f"extra); install it with: {install_hint(extras[-1])}")


def require(module: str, what: str | None = None, extra: str | None = None) -> None:
    """Import ``module`` or raise :class:`MissingExtra` naming the extra."""
    from importlib import import_module

    try:
        import_module(module)
    except ModuleNotFoundError as exc:
        raise missing_extra(exc.name or module, what, extra) from exc

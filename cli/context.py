"""What every command shares: settings from the root options, wiring, and clear errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console

from reasongen.bootstrap import Wiring, bootstrap
from reasongen.settings import Settings, load_settings

console = Console()
err_console = Console(stderr=True)

# Errors whose message is the whole story: printed without a traceback, exit status 2.
USER_ERRORS: tuple[type[BaseException], ...] = (LookupError, ValueError, RuntimeError, FileNotFoundError)


def settings_from(ctx: typer.Context) -> Settings:
    root = ctx.find_root()
    if not isinstance(root.obj, Settings):
        root.obj = load_settings()
    return root.obj


def fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def wiring(ctx: typer.Context, *, check_schema: bool = True) -> Iterator[Wiring]:
    """Open the database for one command; turn known failures into one clear line."""
    try:
        wired = bootstrap(settings_from(ctx), check_schema=check_schema)
    except USER_ERRORS as exc:
        fail(str(exc))
    try:
        yield wired
    except (typer.Exit, typer.Abort):
        raise  # click's Exit is a RuntimeError: a command's own exit code is not an error
    except USER_ERRORS as exc:
        fail(str(exc))
    finally:
        wired.close()


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")

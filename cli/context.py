"""What every command shares: settings from the root options, wiring, output helpers."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console

from cli.errors import print_error
from reasongen.bootstrap import Wiring, bootstrap
from reasongen.errors import ExitCode
from reasongen.settings import Settings, load_settings

console = Console()
err_console = Console(stderr=True)


def settings_from(ctx: typer.Context) -> Settings:
    root = ctx.find_root()
    if not isinstance(root.obj, Settings):
        root.obj = load_settings()
    return root.obj


def fail(message: str, code: int = ExitCode.BAD_INPUT) -> NoReturn:
    """A command's own refusal: one `error:` line and the exit status (README "Exit codes")."""
    print_error(message, err_console)
    raise typer.Exit(int(code))


@contextmanager
def wiring(ctx: typer.Context, *, check_schema: bool = True) -> Iterator[Wiring]:
    """Open the database for one command. Failures propagate to the error layer (cli/errors.py), which
    prints one line with the fix and exits with the documented status."""
    wired = bootstrap(settings_from(ctx), check_schema=check_schema)
    try:
        yield wired
    finally:
        wired.close()


def check_broker(settings: Settings) -> None:
    """Fail now, in one line, when the broker is unreachable (a worker would retry for minutes)."""
    from kombu import Connection

    if settings.broker_url:
        with Connection(settings.broker_url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")

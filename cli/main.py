"""The `reasongen` Typer app: root options, then each command group registers itself."""

from __future__ import annotations

from importlib import import_module

import typer

from reasongen import __version__
from reasongen.settings import load_settings

app = typer.Typer(
    name="reasongen",
    help="Generate reasoning drafts for a multilingual (en/ja/zh) SFT dataset, review them, build and train.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals could hold an API key
)

# Each module defines register(app). The order is the order of a record's path.
COMMAND_MODULES = ["db", "ingest", "generate", "queue", "review", "build", "train", "demo"]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"reasongen {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    database_url: str = typer.Option(None, "--database-url", envvar="REASONGEN_DATABASE_URL",
                                     help="SQLAlchemy URL. Default: sqlite file reasongen.db here.", show_default=False),
    broker_url: str = typer.Option(None, "--broker-url", envvar="REASONGEN_BROKER_URL",
                                   help="Celery broker (redis://...). Unset: work runs in-process.", show_default=False),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    ctx.obj = load_settings(database_url=database_url, broker_url=broker_url)


for _name in COMMAND_MODULES:
    import_module(f"cli.{_name}").register(app)

"""`reasongen db ...`: create and upgrade the schema."""

from __future__ import annotations

import typer

from cli.context import console, settings_from
from storage import migrate

db_app = typer.Typer(help="Create or upgrade the database schema (Alembic migrations).", no_args_is_help=True)


@db_app.command("upgrade")
def upgrade(ctx: typer.Context, revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Create the schema, or bring it up to date. Safe to run any number of times."""
    url = settings_from(ctx).database_url
    migrate.upgrade(url, revision)  # an unreachable or missing database: one line from the error layer, exit 5
    console.print(f"[green]Schema is at {migrate.head_revision()}[/] in {_safe(url)}")


@db_app.command("current")
def current(ctx: typer.Context) -> None:
    """Print the schema revision of the database."""
    from storage.db import make_engine

    engine = make_engine(settings_from(ctx).database_url)
    console.print(f"current: {migrate.current_revision(engine)}  head: {migrate.head_revision()}")
    engine.dispose()


def _safe(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")

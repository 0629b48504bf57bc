"""Schema management: `reasongen db upgrade` and the check every other command makes first."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from storage.db import normalise_url

MIGRATIONS = Path(__file__).with_name("migrations")


class SchemaMissingError(RuntimeError):
    """The database has no reasongen schema, or an older one."""


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def head_revision() -> str | None:
    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def ensure_schema(engine: Engine) -> None:
    """Raise a message that says how to fix it when the schema is missing or behind."""
    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    where = engine.url.render_as_string(hide_password=True)
    state = "has no reasongen schema" if current is None else f"is at schema {current}, the code needs {head}"
    raise SchemaMissingError(f"The database {where} {state}. Create or update it with: reasongen db upgrade")

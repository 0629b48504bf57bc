"""PostgreSQL bulk insert of drafts as one array per column, unnested server-side.

``INSERT ... SELECT * FROM unnest(CAST(:col AS type[]), ...)`` is the same short statement for one row or five
hundred, so psycopg caches its parse and the server prepares it; the multi-row ``VALUES`` form is a new
statement for every row count and, past psycopg's 4,096 characters, parsed again on every call. Columns a row
leaves out get the model's own defaults, as the ORM insert gives them.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson
from sqlalchemy import TextClause, text
from sqlalchemy.dialects import postgresql

from storage.models import Draft


@functools.cache
def _columns() -> tuple[tuple[Any, str], ...]:
    """(column, its PostgreSQL type) for every column but the id."""
    dialect: Any = postgresql.dialect()  # type: ignore[no-untyped-call]
    return tuple((c, c.type.compile(dialect=dialect)) for c in Draft.__table__.columns if not c.primary_key)


@functools.cache
def unnest_insert() -> TextClause:
    names = ", ".join(c.name for c, _ in _columns())
    arrays = ", ".join(f"CAST(:{c.name} AS {pg_type}[])" for c, pg_type in _columns())
    return text(f"INSERT INTO {Draft.__tablename__} ({names}) SELECT * FROM unnest({arrays}) "
                "ON CONFLICT (cache_key, record_id) DO NOTHING RETURNING id, record_id, template_name, model")


def unnest_params(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """One list per column, in row order; JSON columns as JSON text (cast to jsonb[] by the statement)."""
    params: dict[str, list[Any]] = {}
    for column, pg_type in _columns():
        values = [row[column.name] if column.name in row else _default(column) for row in rows]
        if pg_type.startswith("JSON"):
            values = [None if v is None else orjson.dumps(v).decode() for v in values]
        params[column.name] = values
    return params


def _default(column: Any) -> Any:
    """The model's default for a column a row leaves out (a fresh object each time for ``dict``/``list``)."""
    default = column.default
    if default is None:
        return None
    if getattr(default, "is_callable", False):
        return default.arg(None)
    return getattr(default, "arg", None)

"""PostgreSQL statements for saving a sub-batch of drafts: each the same short text whatever the row count.

The rows travel as one JSON document (``jsonb_to_recordset``) and the keys as arrays (``= ANY``, ``unnest``), so
psycopg caches each statement's parse and the server prepares it. The multi-row ``VALUES`` form and SQLAlchemy's
expanded ``IN`` lists are a new statement for every row count and, past psycopg's 4,096 characters, parsed again
on every call; one array per column (the previous form) paid psycopg's per-element array dumping in Python, 0.1 ms a
row. orjson writes the JSON in C: a sub-batch of 50 drafts is inserted for about 4 ms of interpreter time (9 before),
and saved whole (delete, insert, retire, make current) for about 8 (17 before). Columns a row leaves out get the
model's own defaults, as the ORM insert gives them.
"""

from __future__ import annotations

import functools
from datetime import datetime
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
def recordset_insert() -> TextClause:
    names = ", ".join(c.name for c, _ in _columns())
    spec = ", ".join(f"{c.name} {pg_type}" for c, pg_type in _columns())
    return text(f"INSERT INTO {Draft.__tablename__} ({names}) SELECT {names} "
                f"FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS t({spec}) "
                "ON CONFLICT (cache_key, record_id) DO NOTHING RETURNING id, record_id, template_name, model")


def recordset_params(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Every row with every column (left-out ones at the model's default), as one JSON array."""
    columns = [c for c, _ in _columns()]
    full = [{c.name: row[c.name] if c.name in row else _default(c) for c in columns} for row in rows]
    return {"rows": orjson.dumps(full).decode()}


DELETE_FAILED = text(
    f"DELETE FROM {Draft.__tablename__} WHERE status = 'failed' AND (cache_key, record_id) IN "
    "(SELECT k, r FROM unnest(CAST(:keys AS varchar[]), CAST(:record_ids AS bigint[])) AS u(k, r))")

DRAFTED = text(  # records of (key, record) pairs that hold a good draft under their key
    f"SELECT record_id FROM {Draft.__tablename__} WHERE status != 'failed' AND (cache_key, record_id) IN "
    "(SELECT k, r FROM unnest(CAST(:keys AS varchar[]), CAST(:record_ids AS bigint[])) AS u(k, r))")

RETIRE_CURRENT = text(
    f"UPDATE {Draft.__tablename__} SET is_current = false, updated_at = :now WHERE record_id = ANY(:record_ids) "
    "AND template_name = :template_name AND model = :model AND is_current")

MAKE_CURRENT = text(f"UPDATE {Draft.__tablename__} SET is_current = true, updated_at = :now WHERE id = ANY(:ids)")


def delete_failed_params(pairs: list[tuple[str, int]]) -> dict[str, list[Any]]:
    return {"keys": [k for k, _ in pairs], "record_ids": [r for _, r in pairs]}


def retire_params(record_ids: list[int], template_name: str, model: str, now: datetime) -> dict[str, Any]:
    return {"record_ids": record_ids, "template_name": template_name, "model": model, "now": now}


def _default(column: Any) -> Any:
    """The model's default for a column a row leaves out (a fresh object each time for ``dict``/``list``)."""
    default = column.default
    if default is None:
        return None
    if getattr(default, "is_callable", False):
        return default.arg(None)
    return getattr(default, "arg", None)

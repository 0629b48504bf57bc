"""Loading a batch into the temporary staging table: COPY on PostgreSQL, executemany on SQLite.

This is the only part of the bulk write that differs by database; the upsert itself is shared SQL
(storage.ingest.bulk). Both loaders use the unit of work's own DBAPI connection, so the staging rows
live in the ingest's single transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import orjson
from sqlalchemy.orm import Session

from storage.ingest.types import SourceRecord

STAGE = "_ingest_stage"
SEEN = "_ingest_seen"
COLUMNS = ("line", "key", "lang", "instruction", "input", "output", "field", "uniqueness", "meta", "content_hash")
CREATE = (
    f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} (line BIGINT, key TEXT, lang TEXT, instruction TEXT, input TEXT,"
    " output TEXT, field TEXT, uniqueness TEXT, meta TEXT, content_hash TEXT)",
    # Every key of this file so far, with its first line: repeats across batches and --prune use it.
    f"CREATE TEMP TABLE IF NOT EXISTS {SEEN} (key TEXT PRIMARY KEY, line BIGINT)",
)


class StageLoader(Protocol):
    meta_sql: str  # how the staged meta text becomes the records.meta column

    def load(self, records: Sequence[SourceRecord]) -> None: ...


def stage_row(r: SourceRecord) -> tuple[Any, ...]:
    meta = orjson.dumps(r.meta, default=str).decode() if r.meta else "{}"
    return (r.line, r.key, r.lang, r.instruction, r.input, r.output, r.field, r.uniqueness, meta, r.content_hash)


class PgCopyLoader:
    meta_sql = "CAST(meta AS jsonb)"

    def __init__(self, dbapi_conn: Any):
        self.conn = dbapi_conn
        # The per-row index probes look expensive to the planner, which then spends longer compiling
        # them (JIT) than running them. SET LOCAL ends with the ingest's transaction.
        self.conn.execute("SET LOCAL jit = off")

    def load(self, records: Sequence[SourceRecord]) -> None:
        with self.conn.cursor() as cur:
            cur.execute(f"TRUNCATE {STAGE}")
            with cur.copy(f"COPY {STAGE} ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for record in records:
                    copy.write_row(stage_row(record))


class SqliteLoader:
    meta_sql = "meta"

    def __init__(self, dbapi_conn: Any):
        self.conn = dbapi_conn

    def load(self, records: Sequence[SourceRecord]) -> None:
        self.conn.execute(f"DELETE FROM {STAGE}")
        marks = ", ".join("?" * len(COLUMNS))
        self.conn.executemany(f"INSERT INTO {STAGE} VALUES ({marks})", map(stage_row, records))


def loader_for(session: Session) -> StageLoader:
    dbapi_conn = session.connection().connection.driver_connection
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return PgCopyLoader(dbapi_conn)
    if dialect == "sqlite":
        return SqliteLoader(dbapi_conn)
    raise ValueError(f"ingest supports PostgreSQL and SQLite, not {dialect}")

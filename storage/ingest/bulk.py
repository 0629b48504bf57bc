"""The bulk upsert stage: batches of SourceRecords in, counts out, all inside the caller's transaction.

Per batch: stage the rows; classify each one (repeat of an id seen earlier in the file, new, same,
changed, back from deletion); drop the repeats and remember the rest; copy the old content of changed
records to record_versions; then one INSERT ... SELECT ... ON CONFLICT DO UPDATE that only touches rows
whose content changed (or that come back from deletion). Unchanged rows are not written at all, so a
second ingest of the same file changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import DateTime, bindparam, text
from sqlalchemy.orm import Session

from storage.ingest.staging import CREATE, SEEN, STAGE, StageLoader, loader_for
from storage.ingest.types import SourceRecord
from storage.models import utcnow
from storage.repositories.base import rowcount

_NOW = bindparam("now", type_=DateTime(timezone=True))
_CONTENT = "lang, instruction, input, output, field, uniqueness"
# Staged rows are matched to records with a scalar subquery per row, which is always an index probe on
# (dataset_id, key). A plain join lets PostgreSQL pick a hash join over the whole dataset, and inside a
# large load it does: the statistics know nothing of the rows added earlier in the same transaction.
# A row's state: 'R' for a repeat of an id seen earlier in the file; else 'L'ive or 'D'eleted, then 'S'ame
# or 'C'hanged content; NULL for a new key. (A scalar subquery, not EXISTS, for the repeat check: PostgreSQL
# may answer EXISTS by hashing the whole table of seen ids.)
_STATE = (
    f"CASE WHEN (SELECT 1 FROM {SEEN} x WHERE x.key = s.key) IS NOT NULL THEN 'R' ELSE"
    " (SELECT CASE WHEN r.deleted_at IS NULL THEN 'L' ELSE 'D' END"
    " || CASE WHEN r.content_hash = s.content_hash THEN 'S' ELSE 'C' END"
    " FROM records r WHERE r.dataset_id = :ds AND r.key = s.key) END"
)
_CHANGED_ID = (
    "(SELECT r.id FROM records r WHERE r.dataset_id = :ds AND r.key = s.key AND r.content_hash <> s.content_hash)"
)

CLASSIFY = text(f"SELECT state, count(*) FROM (SELECT {_STATE} AS state FROM {STAGE} s) m GROUP BY state")
REPEATS = text(
    f"SELECT key, first FROM (SELECT s.key, (SELECT x.line FROM {SEEN} x WHERE x.key = s.key) AS first"
    f" FROM {STAGE} s) m WHERE first IS NOT NULL"
)
DROP_REPEATS = text(f"DELETE FROM {STAGE} WHERE key IN :keys").bindparams(bindparam("keys", expanding=True))
SEEN_ADD = text(f"INSERT INTO {SEEN} (key, line) SELECT key, line FROM {STAGE}")
HISTORY = text(
    f"INSERT INTO record_versions (record_id, version, content_hash, {_CONTENT}, meta, superseded_at)"
    f" SELECT r.id, r.version, r.content_hash, {_CONTENT}, r.meta, :now FROM records r"
    f" WHERE r.id IN (SELECT {_CHANGED_ID} FROM {STAGE} s)"
).bindparams(_NOW)
UPSERT = (
    f"INSERT INTO records (dataset_id, key, {_CONTENT}, meta, content_hash, version, created_at, updated_at)"
    f" SELECT :ds, key, {_CONTENT}, {{meta}}, content_hash, 1, :now, :now FROM {STAGE} WHERE true"
    " ON CONFLICT (dataset_id, key) DO UPDATE SET"
    " lang = excluded.lang, instruction = excluded.instruction, input = excluded.input,"
    " output = excluded.output, field = excluded.field, uniqueness = excluded.uniqueness,"
    " meta = excluded.meta, content_hash = excluded.content_hash,"
    " version = records.version + CASE WHEN records.content_hash <> excluded.content_hash THEN 1 ELSE 0 END,"
    " deleted_at = NULL, updated_at = excluded.updated_at"
    " WHERE records.content_hash <> excluded.content_hash OR records.deleted_at IS NOT NULL"
)
PRUNE = text(
    "UPDATE records SET deleted_at = :now, updated_at = :now"
    " WHERE dataset_id = :ds AND deleted_at IS NULL"
    f" AND NOT EXISTS (SELECT 1 FROM {SEEN} s WHERE s.key = records.key)"
).bindparams(_NOW)


@dataclass
class BatchResult:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    restored: int = 0
    # (record, line of the first record with that id) for ids repeated from an earlier batch
    repeats: list[tuple[SourceRecord, int]] = field(default_factory=list)


class BulkWriter:
    """Upserts batches with unique keys into one dataset. Use as a context manager."""

    def __init__(self, session: Session, dataset_id: int, loader: StageLoader | None = None):
        self.session = session
        self.dataset_id = dataset_id
        self.loader = loader or loader_for(session)
        self.now: datetime = utcnow()
        self.upsert = text(UPSERT.format(meta=self.loader.meta_sql)).bindparams(_NOW)

    def __enter__(self) -> "BulkWriter":
        for ddl in CREATE:
            self.session.execute(text(ddl))
        self._clear()
        return self

    def __exit__(self, *exc: object) -> None:
        # After an error the transaction is rolled back, which takes the staged rows along.
        if exc[0] is None:
            self.session.execute(text(f"DROP TABLE IF EXISTS {STAGE}"))
            self.session.execute(text(f"DROP TABLE IF EXISTS {SEEN}"))

    def _clear(self) -> None:
        # A failed ingest on SQLite can leave the tables on a pooled connection.
        self.session.execute(text(f"DELETE FROM {STAGE}"))
        self.session.execute(text(f"DELETE FROM {SEEN}"))

    def write(self, records: Sequence[SourceRecord]) -> BatchResult:
        result = BatchResult()
        self.loader.load(records)
        states: dict[str | None, int] = dict(self.session.execute(CLASSIFY, {"ds": self.dataset_id}).all())
        if states.get("R"):
            result.repeats = self._drop_repeats(records)
        self.session.execute(SEEN_ADD)
        # read = inserted + updated + unchanged + rejected; restored counts again those that were deleted
        result.inserted, result.unchanged = states.get(None, 0), states.get("LS", 0) + states.get("DS", 0)
        result.updated = states.get("LC", 0) + states.get("DC", 0)
        result.restored = states.get("DS", 0) + states.get("DC", 0)
        if result.updated:
            self.session.execute(HISTORY, {"ds": self.dataset_id, "now": self.now})
        if result.inserted or result.updated or result.restored:
            self.session.execute(self.upsert, {"ds": self.dataset_id, "now": self.now})
        return result

    def _drop_repeats(self, records: Sequence[SourceRecord]) -> list[tuple[SourceRecord, int]]:
        first: dict[str, int] = dict(self.session.execute(REPEATS).all())
        self.session.execute(DROP_REPEATS, {"keys": list(first)})
        return [(r, first[r.key]) for r in records if r.key in first]

    def prune(self) -> int:
        """Mark the dataset's live records whose id this file did not contain as deleted."""
        return rowcount(self.session.execute(PRUNE, {"ds": self.dataset_id, "now": self.now}))

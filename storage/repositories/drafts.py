"""Drafts: insert idempotently by cache key, keep one current per (record, template, model).

A good draft holds its cache key for ever (the same request is never sent twice); a failed one gives
it up to the next attempt, which replaces it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import String, any_, bindparam, delete, select, tuple_, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from storage.models import Draft, utcnow
from storage.repositories import bulk


class DraftRepository:
    def __init__(self, session: Session):
        self.session = session

    def existing_keys(self, keys: Iterable[str]) -> set[str]:
        """Keys already drafted successfully (failed drafts do not count: they are retried)."""
        keys = list(keys)
        if not keys:
            return set()
        query = select(Draft.cache_key).where(Draft.cache_key.in_(keys), Draft.status != "failed")
        return set(self.session.scalars(query))

    def drafted(self, keys: dict[int, str]) -> set[int]:
        """Records (of ``{record_id: cache_key}``) that already hold a good draft under their key."""
        if not keys:
            return set()
        pairs = [(k, r) for r, k in keys.items()]
        if self._pg():
            return set(self.session.scalars(bulk.DRAFTED, bulk.delete_failed_params(pairs)))
        query = select(Draft.record_id).where(tuple_(Draft.cache_key, Draft.record_id).in_(pairs),
                                              Draft.status != "failed")
        return set(self.session.scalars(query))

    def share(self, keys: dict[int, str], batch_id: int | None, *, include_failed: bool = False) -> dict[int, bool]:
        """Give records (``{record_id: cache_key}``) a copy of another record's draft with the same key: records
        with identical content reuse the text, no second request. Returns {record_id: copied draft failed}."""
        wanted = {r: k for r, k in keys.items()}
        if not wanted:
            return {}
        keyed = (Draft.cache_key == any_(bindparam("keys", sorted(set(wanted.values())), type_=ARRAY(String))) if self._pg()
                 else Draft.cache_key.in_(set(wanted.values())))  # one statement text whatever the count (bulk.py)
        query = select(Draft).where(keyed, Draft.is_current.is_(True))
        if not include_failed:
            query = query.where(Draft.status != "failed")
        sources: dict[str, Draft] = {}
        for d in self.session.scalars(query.order_by(Draft.id)):
            sources.setdefault(d.cache_key, d)
        rows = [_copy_of(sources[k], r, batch_id) for r, k in wanted.items()
                if k in sources and sources[k].record_id != r]
        self.add_many(rows)
        return {row["record_id"]: row["status"] == "failed" for row in rows}

    def _pg(self) -> bool:
        return self.session.get_bind().dialect.name == "postgresql"

    def add(self, values: dict[str, Any]) -> bool:
        """Insert one draft unless its key is taken by a good draft; make it current. Returns whether it was new."""
        return self.add_many([values]) == 1

    def add_many(self, rows: list[dict[str, Any]]) -> int:
        """Insert a sub-batch of drafts in a few statements; each new one becomes current. Returns how many were new.

        Insert first, retire second: a concurrent writer that lost the race on a key changes nothing. Rows
        must be for distinct records.
        """
        if not rows:
            return 0
        pairs = [(r["cache_key"], r["record_id"]) for r in rows]
        pg = self._pg()
        if pg:  # short statements over arrays and one JSON document: storage/repositories/bulk.py
            self.session.execute(bulk.DELETE_FAILED, bulk.delete_failed_params(pairs))
        else:
            self.session.execute(delete(Draft).where(tuple_(Draft.cache_key, Draft.record_id).in_(pairs),
                                                     Draft.status == "failed"))
        new = self._insert_new([{**r, "is_current": False} for r in rows])
        now = utcnow()
        for (template_name, model), group in _by_template_model(new).items():
            self._retire_current([r for _, r in group], template_name, model, now)
        if new and pg:
            self.session.execute(bulk.MAKE_CURRENT, {"ids": [n.id for n in new], "now": now})
        elif new:
            self.session.execute(update(Draft).where(Draft.id.in_([n.id for n in new])).values(is_current=True))
        return len(new)

    def _insert_new(self, rows: list[dict[str, Any]]) -> Sequence[Any]:
        """Insert, skipping keys already held; (id, record_id, template_name, model) of the rows inserted."""
        if self._pg():
            return self.session.execute(bulk.recordset_insert(), bulk.recordset_params(rows)).all()
        # Parameters passed apart from the statement (executemany): the statement compiles once and is cached.
        stmt = (sqlite_insert(Draft).on_conflict_do_nothing(index_elements=["cache_key", "record_id"])
                .returning(Draft.id, Draft.record_id, Draft.template_name, Draft.model))
        return self.session.execute(stmt, rows).all()

    def _retire_current(self, record_ids: list[int], template_name: str, model: str, now: datetime) -> None:
        if self._pg():
            self.session.execute(bulk.RETIRE_CURRENT, bulk.retire_params(record_ids, template_name, model, now))
            return
        self.session.execute(
            update(Draft)
            .where(Draft.record_id.in_(record_ids), Draft.template_name == template_name,
                   Draft.model == model, Draft.is_current.is_(True))
            .values(is_current=False)
        )


_COPIED = ("record_hash", "template_name", "template_hash", "backend", "model", "params", "transformed_input",
           "reasoning", "response", "raw_text", "error", "finish_reason", "flags", "is_fake", "cache_key")


def _copy_of(source: Draft, record_id: int, batch_id: int | None) -> dict[str, Any]:
    """A new draft for ``record_id`` with the source's text; nothing was paid for it, so no tokens or cost."""
    values = {name: getattr(source, name) for name in _COPIED}
    return dict(values, record_id=record_id, batch_id=batch_id, shared_from_id=source.id,
                status="failed" if source.status == "failed" else "pending")


def _by_template_model(rows: Iterable[Any]) -> dict[tuple[str, str], list[tuple[int, int]]]:
    groups: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for row in rows:
        groups.setdefault((row.template_name, row.model), []).append((row.id, row.record_id))
    return groups

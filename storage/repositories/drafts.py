"""Drafts: insert idempotently by cache key, keep one current per (record, template, model).

A good draft holds its cache key for ever (the same request is never sent twice); a failed one gives
it up to the next attempt, which replaces it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from storage.models import Draft


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

    def get(self, draft_id: int) -> Draft | None:
        return self.session.get(Draft, draft_id)

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
        keys = [r["cache_key"] for r in rows]
        self.session.execute(delete(Draft).where(Draft.cache_key.in_(keys), Draft.status == "failed"))
        insert = pg_insert if self.session.get_bind().dialect.name == "postgresql" else sqlite_insert
        stmt = (insert(Draft).values([{**r, "is_current": False} for r in rows])
                .on_conflict_do_nothing(index_elements=["cache_key"])
                .returning(Draft.id, Draft.record_id, Draft.template_name, Draft.model))
        new = self.session.execute(stmt).all()
        for (template_name, model), group in _by_template_model(new).items():
            self._retire_current([r for _, r in group], template_name, model)
        if new:
            self.session.execute(update(Draft).where(Draft.id.in_([n.id for n in new])).values(is_current=True))
        return len(new)

    def _retire_current(self, record_ids: list[int], template_name: str, model: str) -> None:
        self.session.execute(
            update(Draft)
            .where(Draft.record_id.in_(record_ids), Draft.template_name == template_name,
                   Draft.model == model, Draft.is_current.is_(True))
            .values(is_current=False)
        )

    def for_records(self, record_ids: Iterable[int], *, current_only: bool = True) -> list[Draft]:
        query = select(Draft).where(Draft.record_id.in_(list(record_ids))).order_by(Draft.record_id, Draft.id)
        if current_only:
            query = query.where(Draft.is_current.is_(True))
        return list(self.session.scalars(query))


def _by_template_model(rows: Iterable[Any]) -> dict[tuple[str, str], list[tuple[int, int]]]:
    groups: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for row in rows:
        groups.setdefault((row.template_name, row.model), []).append((row.id, row.record_id))
    return groups

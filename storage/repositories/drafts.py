"""Drafts: insert idempotently by cache key, keep one current per (record, template, model)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from storage.models import Draft


class DraftRepository:
    def __init__(self, session: Session):
        self.session = session

    def existing_keys(self, keys: Iterable[str]) -> set[str]:
        keys = list(keys)
        if not keys:
            return set()
        return set(self.session.scalars(select(Draft.cache_key).where(Draft.cache_key.in_(keys))))

    def get(self, draft_id: int) -> Draft | None:
        return self.session.get(Draft, draft_id)

    def add(self, values: dict[str, Any]) -> bool:
        """Insert one draft unless its cache key exists; make it current. Returns whether it was new."""
        insert = pg_insert if self.session.get_bind().dialect.name == "postgresql" else sqlite_insert
        self._retire_current(values["record_id"], values["template_name"], values["model"])
        stmt = insert(Draft).values(is_current=True, **values).on_conflict_do_nothing(index_elements=["cache_key"])
        return (self.session.execute(stmt).rowcount or 0) > 0

    def _retire_current(self, record_id: int, template_name: str, model: str) -> None:
        self.session.execute(
            update(Draft)
            .where(Draft.record_id == record_id, Draft.template_name == template_name,
                   Draft.model == model, Draft.is_current.is_(True))
            .values(is_current=False)
        )

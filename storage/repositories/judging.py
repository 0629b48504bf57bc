"""Judgements (a judge's scores per draft, keyed like drafts) and approval policies."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from storage.models import Draft, Judgement, Policy
from storage.repositories.base import Repository, rowcount


class JudgementRepository(Repository):
    def existing_keys(self, keys: Iterable[str]) -> set[str]:
        """Keys already judged successfully (a failed judgement is tried again)."""
        keys = list(keys)
        if not keys:
            return set()
        stmt = select(Judgement.cache_key).where(Judgement.cache_key.in_(keys), Judgement.error.is_(None))
        return set(self.session.scalars(stmt))

    def add_many(self, rows: Sequence[dict[str, Any]]) -> int:
        """Insert judgements; a key held by a good judgement is kept, a failed one is replaced."""
        if not rows:
            return 0
        keys = [r["cache_key"] for r in rows]
        self.session.execute(delete(Judgement).where(Judgement.cache_key.in_(keys), Judgement.error.is_not(None)))
        insert = pg_insert if self.session.get_bind().dialect.name == "postgresql" else sqlite_insert
        stmt = insert(Judgement).values(list(rows)).on_conflict_do_nothing(index_elements=["cache_key"])
        return rowcount(self.session.execute(stmt))

    def latest_for(self, draft_ids: Sequence[int], rubric_name: str | None = None) -> dict[int, Judgement]:
        """The newest good judgement of each draft (under ``rubric_name`` when given)."""
        if not draft_ids:
            return {}
        stmt = select(Judgement).where(Judgement.draft_id.in_(list(draft_ids)), Judgement.error.is_(None))
        if rubric_name:
            stmt = stmt.where(Judgement.rubric_name == rubric_name)
        newest: dict[int, Judgement] = {}
        for j in self.session.scalars(stmt.order_by(Judgement.id)):
            newest[j.draft_id] = j
        return newest

    def for_draft(self, draft_id: int) -> list[Judgement]:
        stmt = select(Judgement).where(Judgement.draft_id == draft_id).order_by(Judgement.id)
        return list(self.session.scalars(stmt))

    def errors_for(self, draft_ids: Sequence[int]) -> dict[int, str]:
        """Drafts whose last judgement failed, with the reason (shown instead of a silent 'no decision')."""
        if not draft_ids:
            return {}
        stmt = (select(Judgement.draft_id, Judgement.error).where(Judgement.draft_id.in_(list(draft_ids)))
                .order_by(Judgement.id))
        last: dict[int, str | None] = {}
        for draft_id, error in self.session.execute(stmt):
            last[int(draft_id)] = error
        return {k: v for k, v in last.items() if v}

    def count_for_batch(self, batch_id: int) -> int:
        """Judgements this batch wrote (one request each; failed ones included: they were sent too)."""
        return int(self.session.scalar(select(func.count()).where(Judgement.batch_id == batch_id)) or 0)

    def spend(self, batch_id: int) -> tuple[int, float]:
        stmt = select(func.coalesce(func.sum(Judgement.prompt_tokens + Judgement.completion_tokens), 0),
                      func.coalesce(func.sum(Judgement.cost_usd), 0.0)).where(Judgement.batch_id == batch_id)
        tokens, cost = self.session.execute(stmt).one()
        return int(tokens), float(cost)

    def pending_of_batch(self, record_ids: Sequence[int], template_name: str, model: str) -> int:
        """Current drafts of these records (this batch's template and model) still waiting for a decision."""
        total = 0
        ids = list(record_ids)
        for start in range(0, len(ids), 5000):
            stmt = select(func.count()).select_from(Draft).where(
                Draft.record_id.in_(ids[start : start + 5000]), Draft.template_name == template_name,
                Draft.model == model, Draft.is_current.is_(True), Draft.status == "pending")
            total += int(self.session.scalar(stmt) or 0)
        return total


class PolicyRepository(Repository):
    def get(self, name: str) -> Policy | None:
        return self.session.scalar(select(Policy).where(Policy.name == name))

    def all(self) -> list[Policy]:
        return list(self.session.scalars(select(Policy).order_by(Policy.name)))

    def put(self, name: str, values: dict[str, Any]) -> Policy:
        found = self.get(name)
        if found is None:
            found = Policy(name=name, **values)
            self.session.add(found)
        else:
            for key, value in values.items():
                setattr(found, key, value)
        self.session.flush()
        return found

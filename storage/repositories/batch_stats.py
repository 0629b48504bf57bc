"""What a batch produced: spend, token totals, commonest errors, and the drafts it is compared against."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, func, select

from storage.models import Chunk, Draft, Judgement, Record
from storage.repositories.base import Repository


class BatchStatsRepository(Repository):
    def spend(self, batch_id: int) -> tuple[int, float]:
        """(tokens, USD) of the drafts and judgements this batch wrote (budgets cover both)."""
        stmt = select(func.coalesce(func.sum(Draft.prompt_tokens + Draft.completion_tokens), 0),
                      func.coalesce(func.sum(Draft.cost_usd), 0.0)).where(Draft.batch_id == batch_id)
        tokens, cost = self.session.execute(stmt).one()
        judged = select(func.coalesce(func.sum(Judgement.prompt_tokens + Judgement.completion_tokens), 0),
                        func.coalesce(func.sum(Judgement.cost_usd), 0.0)).where(Judgement.batch_id == batch_id)
        j_tokens, j_cost = self.session.execute(judged).one()
        return int(tokens) + int(j_tokens), float(cost) + float(j_cost)

    def draft_totals(self, batch_id: int) -> dict[str, Any]:
        stmt = select(func.count(), func.coalesce(func.sum(Draft.prompt_tokens), 0),
                      func.coalesce(func.sum(Draft.completion_tokens), 0),
                      func.coalesce(func.sum(Draft.cost_usd), 0.0)).where(Draft.batch_id == batch_id)
        n, prompt, completion, cost = self.session.execute(stmt).one()
        return dict(drafts=n, prompt_tokens=int(prompt), completion_tokens=int(completion), cost_usd=float(cost))

    def average_tokens(self, batch_id: int) -> tuple[float, float]:
        """Mean (prompt, completion) tokens of the drafts this batch paid for (0, 0 before the first)."""
        stmt = select(func.avg(Draft.prompt_tokens), func.avg(Draft.completion_tokens)).where(
            Draft.batch_id == batch_id, Draft.shared_from_id.is_(None))
        prompt, completion = self.session.execute(stmt).one()
        return float(prompt or 0), float(completion or 0)

    def shared(self, batch_id: int) -> int:
        """Drafts of this batch copied from an identical record's draft (no request of their own)."""
        stmt = select(func.count()).where(Draft.batch_id == batch_id, Draft.shared_from_id.is_not(None))
        return int(self.session.scalar(stmt) or 0)

    def top_errors(self, batch_id: int, limit: int = 5) -> list[tuple[str, int]]:
        drafts = (select(Draft.error, func.count()).where(Draft.batch_id == batch_id, Draft.error.is_not(None))
                  .group_by(Draft.error))
        chunks = (select(Chunk.last_error, func.count())
                  .where(Chunk.batch_id == batch_id, Chunk.last_error.is_not(None)).group_by(Chunk.last_error))
        counts = [(str(e), int(n)) for e, n in [*self.session.execute(drafts), *self.session.execute(chunks)]]
        return sorted(counts, key=lambda p: -p[1])[:limit]

    def current_drafts(self, record_ids: Sequence[int], template_name: str, model: str) -> dict[int, Draft]:
        stmt = select(Draft).where(Draft.record_id.in_(list(record_ids)), Draft.template_name == template_name,
                                   Draft.model == model, Draft.is_current.is_(True))
        return {d.record_id: d for d in self.session.scalars(stmt)}

    def completion_tokens_avg(self, model: str) -> float | None:
        stmt = select(func.avg(Draft.completion_tokens)).where(Draft.model == model, Draft.error.is_(None))
        value = self.session.scalar(stmt)
        return float(value) if value else None


    def rejections(self, record_ids: Sequence[int], template_name: str, model: str) -> dict[int, int]:
        """How many drafts of each record (this template and model, current or not) were rejected with a note."""
        counts: dict[int, int] = {}
        ids = list(record_ids)
        for start in range(0, len(ids), 5000):
            stmt = (select(Draft.record_id, func.count()).where(
                Draft.record_id.in_(ids[start : start + 5000]), Draft.template_name == template_name,
                Draft.model == model, Draft.status == "rejected", Draft.review_note.is_not(None))
                .group_by(Draft.record_id))
            counts.update({int(r): int(n) for r, n in self.session.execute(stmt)})
        return counts

    def stale_candidates(self, stmt_ids: Any, template_name: str, model: str) -> list[tuple[Record, Draft | None]]:
        """Records (from a select of ids) with their current draft for this template and model, if any."""
        join = and_(Draft.record_id == Record.id, Draft.template_name == template_name, Draft.model == model,
                    Draft.is_current.is_(True))
        stmt = (select(Record, Draft).outerjoin(Draft, join)
                .where(Record.id.in_(stmt_ids.order_by(None).limit(None).subquery().select()))
                .order_by(Record.id))
        return [(r, d) for r, d in self.session.execute(stmt)]

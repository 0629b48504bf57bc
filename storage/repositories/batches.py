"""Batches: the queue's source of truth, one row per enqueued run.

Transactions that touch a batch and its chunks lock the batch row first (``lock``), always in that order, so
they never deadlock each other on PostgreSQL. Chunks, the follow-up outbox, draft statistics and worker
heartbeats have repositories of their own beside this one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update

from storage.models import Batch
from storage.repositories.base import Repository

OPEN = ("queued", "leased")
TERMINAL = ("done", "failed", "cancelled")


class BatchNotFoundError(LookupError):
    def __init__(self, batch_id: int):
        super().__init__(f"No batch {batch_id}. List batches with: reasongen status")


class BatchRepository(Repository):
    def create(self, **values: Any) -> Batch:
        batch = Batch(**values)
        self.session.add(batch)
        self.session.flush()
        return batch

    def get(self, batch_id: int) -> Batch:
        batch = self.session.get(Batch, batch_id)
        if batch is None:
            raise BatchNotFoundError(batch_id)
        return batch

    def lock(self, batch_id: int) -> Batch:
        """The batch row, locked until commit (PostgreSQL); SQLite serialises writers anyway."""
        stmt = select(Batch).where(Batch.id == batch_id).with_for_update().execution_options(populate_existing=True)
        batch = self.session.scalar(stmt)
        if batch is None:
            raise BatchNotFoundError(batch_id)
        return batch

    def status_of(self, batch_id: int) -> str | None:
        return self.session.scalar(select(Batch.status).where(Batch.id == batch_id))

    def recent(self, limit: int = 20) -> Sequence[Batch]:
        return self.session.scalars(select(Batch).order_by(Batch.id.desc()).limit(limit)).all()

    def add_discarded(self, batch_id: int, usd: float, tokens: int) -> None:
        self._run(update(Batch).where(Batch.id == batch_id).values(
            discarded_usd=Batch.discarded_usd + usd, discarded_tokens=Batch.discarded_tokens + tokens))

    def set_status(self, batch_id: int, status: str, reason: str, *, only_if: str = "running") -> bool:
        stmt = (update(Batch).where(Batch.id == batch_id, Batch.status == only_if)
                .values(status=status, status_reason=reason))
        return self._run(stmt).rowcount == 1

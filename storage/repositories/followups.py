"""The follow-up outbox: a follow-up decided in the database is sent once, and re-sent if a crash lost it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update

from storage.models import Batch
from storage.repositories.base import Repository


class FollowupRepository(Repository):
    def unsent(self, cutoff: datetime) -> list[tuple[int, str]]:
        """Follow-ups decided before ``cutoff`` whose message was never confirmed sent (a crash in between)."""
        stmt = select(Batch.id, Batch.then).where(Batch.followup_enqueued_at < cutoff,
                                                  Batch.followup_sent_at.is_(None), Batch.then.is_not(None))
        return [(int(i), str(t)) for i, t in self.session.execute(stmt)]

    def reclaim(self, batch_id: int, cutoff: datetime, now: datetime) -> bool:
        """Take an unsent follow-up for re-sending. Conditional, so of several sweepers exactly one does."""
        stmt = (update(Batch).where(Batch.id == batch_id, Batch.followup_sent_at.is_(None),
                                    Batch.followup_enqueued_at < cutoff).values(followup_enqueued_at=now))
        return self._run(stmt).rowcount == 1

    def mark_sent(self, batch_id: int, now: datetime) -> None:
        self._run(update(Batch).where(Batch.id == batch_id).values(followup_sent_at=now))

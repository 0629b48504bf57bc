"""The follow-up outbox and the follow-up's own state.

A follow-up decided in the database is sent once, and re-sent if a crash lost it (outbox). Whoever runs it
first claims it (a conditional UPDATE and a lease, renewed while it runs), so two deliveries at the same time
build and train once; its state and error stay on the batch for `status` and `retry-followup`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, or_, select, update

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

    def claim(self, batch_id: int, owner: str, now: datetime, until: datetime) -> bool:
        """Start running a follow-up: pending (or running under an expired lease, or our own lease)."""
        takeable = or_(Batch.followup_status.is_(None), Batch.followup_status == "pending",
                       and_(Batch.followup_status == "running",
                            or_(Batch.followup_lease_expires_at < now, Batch.followup_owner == owner)))
        stmt = (update(Batch).where(Batch.id == batch_id, Batch.then.is_not(None), takeable)
                .values(followup_status="running", followup_owner=owner, followup_lease_expires_at=until,
                        followup_error=None))
        return self._run(stmt).rowcount == 1

    def touch(self, batch_id: int, owner: str, until: datetime) -> bool:
        stmt = (update(Batch).where(Batch.id == batch_id, Batch.followup_owner == owner,
                                    Batch.followup_status == "running").values(followup_lease_expires_at=until))
        return self._run(stmt).rowcount == 1

    def finish(self, batch_id: int, owner: str, error: str | None) -> bool:
        stmt = (update(Batch).where(Batch.id == batch_id, Batch.followup_owner == owner,
                                    Batch.followup_status == "running")
                .values(followup_status="failed" if error else "done", followup_error=error,
                        followup_owner=None, followup_lease_expires_at=None))
        return self._run(stmt).rowcount == 1

    def owners(self) -> list[tuple[int, str]]:
        stmt = select(Batch.id, Batch.followup_owner).where(Batch.followup_status == "running",
                                                            Batch.followup_owner.is_not(None))
        return [(int(i), str(o)) for i, o in self.session.execute(stmt)]

    def expire_lease(self, batch_id: int, owner: str, now: datetime) -> bool:
        stmt = (update(Batch).where(Batch.id == batch_id, Batch.followup_owner == owner,
                                    Batch.followup_status == "running").values(followup_lease_expires_at=now))
        return self._run(stmt).rowcount == 1

    def expired(self, now: datetime) -> list[tuple[int, str]]:
        """Follow-ups whose runner stopped renewing its lease (a train worker killed mid-run)."""
        stmt = select(Batch.id, Batch.then).where(Batch.followup_status == "running",
                                                  Batch.followup_lease_expires_at < now, Batch.then.is_not(None))
        return [(int(i), str(t)) for i, t in self.session.execute(stmt)]

    def release_expired(self, batch_id: int, now: datetime) -> bool:
        stmt = (update(Batch).where(Batch.id == batch_id, Batch.followup_status == "running",
                                    Batch.followup_lease_expires_at < now)
                .values(followup_status="pending", followup_owner=None, followup_lease_expires_at=None,
                        followup_enqueued_at=now, followup_sent_at=None))
        return self._run(stmt).rowcount == 1

    def reopen(self, batch_id: int, now: datetime) -> str | None:
        """`retry-followup`: a failed or skipped follow-up becomes pending again; returns why not otherwise."""
        batch = self.session.get(Batch, batch_id)
        if batch is None or batch.then is None:
            return "it has no follow-up (generate ... --then build|train)"
        if batch.finished_at is None:
            return "it is still running; its follow-up starts when it ends"
        if batch.followup_status in ("running", "done"):
            return f"its follow-up is {batch.followup_status}"
        self._run(update(Batch).where(Batch.id == batch_id)
                  .values(followup_status="pending", followup_error=None, followup_owner=None,
                          followup_lease_expires_at=None, followup_enqueued_at=now, followup_sent_at=None))
        return None

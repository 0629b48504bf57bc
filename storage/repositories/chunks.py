"""Chunks: the unit of work and of retry.

Every state change of a chunk is one conditional UPDATE, so two workers (or a worker and the sweeper) racing
for the same chunk cannot both win.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, insert, or_, select, update

from storage.models import Batch, Chunk
from storage.repositories.base import Repository


class ChunkRepository(Repository):
    def add(self, batch_id: int, id_lists: Sequence[Sequence[int]], now: datetime) -> list[int]:
        rows = [dict(batch_id=batch_id, seq=i, record_ids=list(ids), status="queued", enqueued_at=now,
                     created_at=now, updated_at=now) for i, ids in enumerate(id_lists)]
        if not rows:
            return []
        return list(self.session.scalars(insert(Chunk).returning(Chunk.id), rows))

    def get(self, chunk_id: int) -> Chunk | None:
        return self.session.get(Chunk, chunk_id)

    def for_batch(self, batch_id: int, statuses: Iterable[str] | None = None) -> Sequence[Chunk]:
        stmt = select(Chunk).where(Chunk.batch_id == batch_id).order_by(Chunk.seq)
        if statuses is not None:
            stmt = stmt.where(Chunk.status.in_(list(statuses)))
        return self.session.scalars(stmt).all()

    def claim(self, chunk_id: int, owner: str, now: datetime, until: datetime, max_attempts: int,
              previous: Sequence[str] = ()) -> tuple[int, int, tuple[int, ...]] | None:
        """Lease a queued chunk (or one whose lease expired) of a running batch; counts an attempt. Returns the
        chunk's (batch id, attempts, record ids) when it is ours now, in the same statement (no second read).

        A task retried after a database outage may also take over the lease of its earlier deliveries
        (``previous`` owners, possibly on another worker): the same attempt, not counted again. The lease then
        names this worker, so the sweeper can tell if *it* dies."""
        mine = and_(Chunk.status == "leased", Chunk.lease_owner.in_(list(previous) or [owner]))
        claimable = or_(Chunk.status == "queued", and_(Chunk.status == "leased", Chunk.lease_expires_at < now), mine)
        stmt = (
            update(Chunk)
            .where(Chunk.id == chunk_id, claimable, or_(Chunk.attempts < max_attempts, mine),
                   Chunk.batch_id.in_(select(Batch.id).where(Batch.status == "running")))
            .values(status="leased", lease_owner=owner, lease_expires_at=until,
                    attempts=case((mine, Chunk.attempts), else_=Chunk.attempts + 1),
                    started_at=func.coalesce(Chunk.started_at, now), updated_at=now)
            .returning(Chunk.batch_id, Chunk.attempts, Chunk.record_ids)
        )
        row = self._run(stmt).first()
        return None if row is None else (int(row.batch_id), int(row.attempts), tuple(row.record_ids))

    def leases(self, batch_id: int | None = None) -> list[tuple[int, str]]:
        """(chunk id, lease owner) of every leased chunk."""
        stmt = select(Chunk.id, Chunk.lease_owner).where(Chunk.status == "leased", Chunk.lease_owner.is_not(None))
        return [(int(i), str(o)) for i, o in self.session.execute(_for_batch(stmt, batch_id))]

    def silent_leases(self, touched_before: datetime, batch_id: int | None = None) -> list[tuple[int, str]]:
        """(chunk id, lease owner) of leased chunks whose lease heartbeat has not touched them since
        ``touched_before``: nothing runs them any more, whatever their worker's own heartbeat says."""
        stmt = select(Chunk.id, Chunk.lease_owner).where(Chunk.status == "leased", Chunk.lease_owner.is_not(None),
                                                         Chunk.updated_at < touched_before)
        return [(int(i), str(o)) for i, o in self.session.execute(_for_batch(stmt, batch_id))]

    def expire_lease(self, chunk_id: int, owner: str, now: datetime) -> bool:
        """End a dead owner's lease now (its worker is gone), so the sweeper hands the chunk on at once."""
        stmt = (update(Chunk).where(Chunk.id == chunk_id, Chunk.lease_owner == owner, Chunk.status == "leased")
                .values(lease_expires_at=now))
        return self._run(stmt).rowcount == 1

    def touch_lease(self, chunk_id: int, owner: str, now: datetime, until: datetime) -> bool:
        """The heartbeat: extend a lease we still hold (no batch lock: it writes no draft)."""
        stmt = (update(Chunk).where(Chunk.id == chunk_id, Chunk.lease_owner == owner, Chunk.status == "leased")
                .values(lease_expires_at=until, updated_at=now))
        return self._run(stmt).rowcount == 1

    def reserve(self, chunk_id: int, owner: str, usd: float, tokens: int) -> bool:
        """Add (or, negative, release) a sub-batch's estimated cost to the chunk, if the lease is still ours."""
        stmt = (update(Chunk).where(Chunk.id == chunk_id, Chunk.lease_owner == owner, Chunk.status == "leased")
                .values(reserved_usd=case((Chunk.reserved_usd + usd < 0, 0.0), else_=Chunk.reserved_usd + usd),
                        reserved_tokens=case((Chunk.reserved_tokens + tokens < 0, 0),
                                             else_=Chunk.reserved_tokens + tokens)))
        return self._run(stmt).rowcount == 1

    def reserved(self, batch_id: int) -> tuple[float, int]:
        """(USD, tokens) reserved by the batch's sub-batches in flight (leased chunks only)."""
        stmt = select(func.coalesce(func.sum(Chunk.reserved_usd), 0.0),
                      func.coalesce(func.sum(Chunk.reserved_tokens), 0)).where(
            Chunk.batch_id == batch_id, Chunk.status == "leased")
        usd, tokens = self.session.execute(stmt).one()
        return float(usd), int(tokens)

    def exhausted_queued(self, max_attempts: int, batch_id: int | None = None) -> list[tuple[int, int]]:
        """Queued chunks no claim can take any more (attempts used up): they must fail, not be re-sent."""
        stmt = select(Chunk.id, Chunk.batch_id).where(Chunk.status == "queued", Chunk.attempts >= max_attempts)
        return [tuple(r) for r in self.session.execute(_for_batch(stmt, batch_id))]

    def fail_exhausted(self, chunk_id: int, max_attempts: int, now: datetime, error: str) -> bool:
        stmt = (update(Chunk).where(Chunk.id == chunk_id, Chunk.status == "queued", Chunk.attempts >= max_attempts)
                .values(status="failed", finished_at=now, updated_at=now, last_error=error))
        return self._run(stmt).rowcount == 1

    def renew_lease(self, chunk_id: int, batch_id: int, owner: str, now: datetime, until: datetime,
                    progress: dict[str, int]) -> bool:
        """The fence: still ours, and the batch still running? Extends the lease and records progress.

        A batch stopped by its budget still takes results already paid for; a cancelled one takes nothing. The
        batch row is share-locked until commit, so once a cancel has committed no fenced commit can follow it.
        """
        self.session.execute(select(Batch.id).where(Batch.id == batch_id).with_for_update(read=True))
        running = select(Batch.id).where(Batch.id == batch_id, Batch.status.in_(("running", "stopped")))
        stmt = (
            update(Chunk)
            .where(Chunk.id == chunk_id, Chunk.lease_owner == owner, Chunk.status == "leased",
                   Chunk.batch_id.in_(running))
            .values(lease_expires_at=until, updated_at=now, **progress)
        )
        return self._run(stmt).rowcount == 1

    def finish(self, chunk_id: int, owner: str | None, now: datetime, *, expired_before: datetime | None = None,
               **values: Any) -> bool:
        """Move a leased chunk to its next state: with an owner, only if that owner still holds the lease; with
        ``expired_before``, only if the lease (whoever holds it) ran out before then."""
        cond = [Chunk.id == chunk_id, Chunk.status == "leased"]
        if owner is not None:
            cond.append(Chunk.lease_owner == owner)
        if expired_before is not None:
            cond.append(Chunk.lease_expires_at < expired_before)
        stmt = update(Chunk).where(*cond).values(lease_owner=None, lease_expires_at=None, updated_at=now,
                                                 reserved_usd=0.0, reserved_tokens=0, **values)
        return self._run(stmt).rowcount == 1

    def cancel_queued(self, batch_id: int, now: datetime) -> int:
        stmt = (update(Chunk).where(Chunk.batch_id == batch_id, Chunk.status == "queued")
                .values(status="cancelled", finished_at=now, updated_at=now))
        return self._run(stmt).rowcount or 0

    def requeue_cancelled(self, batch_id: int, now: datetime) -> int:
        """Resume: cancelled chunks are queued again with their attempts re-based to zero (a stop is not the
        chunk's fault; with the old count a chunk cancelled on its last attempt could never be claimed)."""
        stmt = (update(Chunk).where(Chunk.batch_id == batch_id, Chunk.status == "cancelled")
                .values(status="queued", finished_at=None, enqueued_at=now, updated_at=now, attempts=0))
        return self._run(stmt).rowcount or 0

    def record_counts(self, batch_id: int) -> tuple[int, int]:
        """(records done, records failed) as the chunks last reported them."""
        stmt = select(func.coalesce(func.sum(Chunk.n_done), 0), func.coalesce(func.sum(Chunk.n_failed), 0)).where(
            Chunk.batch_id == batch_id)
        done, failed = self.session.execute(stmt).one()
        return int(done), int(failed)

    def count(self, batch_id: int) -> dict[str, int]:
        stmt = select(Chunk.status, func.count()).where(Chunk.batch_id == batch_id).group_by(Chunk.status)
        return {status: n for status, n in self.session.execute(stmt)}

    def expired_leases(self, now: datetime, batch_id: int | None = None) -> list[tuple[int, int]]:
        stmt = select(Chunk.id, Chunk.batch_id).where(Chunk.status == "leased", Chunk.lease_expires_at < now)
        return [tuple(r) for r in self.session.execute(_for_batch(stmt, batch_id))]

    def queued_before(self, cutoff: datetime, batch_id: int | None = None) -> list[int]:
        stmt = (select(Chunk.id).join(Batch, Batch.id == Chunk.batch_id)
                .where(Chunk.status == "queued", Chunk.enqueued_at < cutoff, Batch.status == "running"))
        return list(self.session.scalars(_for_batch(stmt, batch_id)))

    def requeue(self, chunk_id: int, now: datetime, *, expired_before: datetime | None = None,
                enqueued_before: datetime | None = None) -> bool:
        """Mark a chunk re-sent. Conditional, so of several sweepers exactly one re-sends it."""
        if expired_before is not None:
            cond = [Chunk.status == "leased", Chunk.lease_expires_at < expired_before]
        else:
            cond = [Chunk.status == "queued", Chunk.enqueued_at < (enqueued_before or now)]
        stmt = (update(Chunk).where(Chunk.id == chunk_id, *cond)
                .values(status="queued", lease_owner=None, lease_expires_at=None, enqueued_at=now, updated_at=now,
                        reserved_usd=0.0, reserved_tokens=0))
        return self._run(stmt).rowcount == 1

    def resend_queued(self, chunk_ids: Sequence[int], now: datetime, enqueued_before: datetime) -> list[int]:
        """Mark queued chunks re-sent, all in one conditional UPDATE (a Redis that restarted empty leaves every
        queued chunk to re-send: one statement each took seconds on a loaded machine while the workers ran dry).
        Of several sweepers, exactly one re-sends each: the ids it returns."""
        if not chunk_ids:
            return []
        stmt = (update(Chunk).where(Chunk.id.in_(list(chunk_ids)), Chunk.status == "queued",
                                    Chunk.enqueued_at < enqueued_before)
                .values(enqueued_at=now, updated_at=now, lease_owner=None, lease_expires_at=None, reserved_usd=0.0,
                        reserved_tokens=0)
                .returning(Chunk.id).execution_options(synchronize_session=False))
        return sorted(self.session.scalars(stmt))

    def backends_of(self, chunk_ids: Sequence[int]) -> dict[int, str]:
        """Each chunk's batch backend, in one query."""
        if not chunk_ids:
            return {}
        stmt = (select(Chunk.id, Batch.backend).join(Batch, Batch.id == Chunk.batch_id)
                .where(Chunk.id.in_(list(chunk_ids))))
        return {int(i): b for i, b in self.session.execute(stmt)}

    def record_ids(self, batch_id: int) -> list[int]:
        ids: list[int] = []
        for chunk in self.for_batch(batch_id):
            ids.extend(chunk.record_ids)
        return ids

    def backend_of(self, chunk_id: int) -> str | None:
        return self.session.scalar(select(Batch.backend).join(Chunk, Chunk.batch_id == Batch.id)
                                   .where(Chunk.id == chunk_id))

    def concurrency_limits(self, chunk_ids: Sequence[int]) -> dict[int, int | None]:
        """The teacher's adaptive concurrency limit last recorded on each chunk's batch (None: not a teacher)."""
        if not chunk_ids:
            return {}
        stmt = (select(Chunk.id, Batch.concurrency_limit).join(Batch, Batch.id == Chunk.batch_id)
                .where(Chunk.id.in_(list(chunk_ids))))
        return {int(i): (int(n) if n is not None else None) for i, n in self.session.execute(stmt)}


def _for_batch(stmt: Any, batch_id: int | None) -> Any:
    return stmt if batch_id is None else stmt.where(Chunk.batch_id == batch_id)

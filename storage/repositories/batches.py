"""Batches and chunks: the queue's source of truth.

Every state change of a chunk is one conditional UPDATE, so two workers (or a worker and the sweeper) racing
for the same chunk cannot both win. Transactions that touch a batch and its chunks lock the batch row first
(``lock``), always in that order, so they never deadlock each other on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from storage.models import Batch, Chunk, Draft, Record, WorkerHeartbeat

OPEN = ("queued", "leased")
TERMINAL = ("done", "failed", "cancelled")


class BatchNotFoundError(LookupError):
    def __init__(self, batch_id: int):
        super().__init__(f"No batch {batch_id}. List batches with: reasongen status")


class BatchRepository:
    def __init__(self, session: Session):
        self.session = session

    def _run(self, stmt: Any) -> Any:
        # Conditional UPDATEs decide in the database; no need to mirror them onto loaded objects (SQLite's naive
        # datetimes would not even compare with ours).
        return self.session.execute(stmt, execution_options={"synchronize_session": False})

    # --- batches -------------------------------------------------------------------------------------
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

    def running_ids(self) -> list[int]:
        return list(self.session.scalars(select(Batch.id).where(Batch.status == "running")))

    def set_status(self, batch_id: int, status: str, reason: str, *, only_if: str = "running") -> bool:
        stmt = (update(Batch).where(Batch.id == batch_id, Batch.status == only_if)
                .values(status=status, status_reason=reason))
        return self._run(stmt).rowcount == 1

    # --- chunks --------------------------------------------------------------------------------------
    def add_chunks(self, batch_id: int, id_lists: Sequence[Sequence[int]], now: datetime) -> list[int]:
        rows = [dict(batch_id=batch_id, seq=i, record_ids=list(ids), status="queued", enqueued_at=now,
                     created_at=now, updated_at=now) for i, ids in enumerate(id_lists)]
        if not rows:
            return []
        return list(self.session.scalars(insert(Chunk).returning(Chunk.id), rows))

    def chunk(self, chunk_id: int) -> Chunk | None:
        return self.session.get(Chunk, chunk_id)

    def chunks(self, batch_id: int, statuses: Iterable[str] | None = None) -> Sequence[Chunk]:
        stmt = select(Chunk).where(Chunk.batch_id == batch_id).order_by(Chunk.seq)
        if statuses is not None:
            stmt = stmt.where(Chunk.status.in_(list(statuses)))
        return self.session.scalars(stmt).all()

    def claim(self, chunk_id: int, owner: str, now: datetime, until: datetime, max_attempts: int) -> bool:
        """Lease a queued chunk (or one whose lease expired) of a running batch; counts an attempt."""
        claimable = or_(Chunk.status == "queued", and_(Chunk.status == "leased", Chunk.lease_expires_at < now))
        stmt = (
            update(Chunk)
            .where(Chunk.id == chunk_id, claimable, Chunk.attempts < max_attempts,
                   Chunk.batch_id.in_(select(Batch.id).where(Batch.status == "running")))
            .values(status="leased", lease_owner=owner, lease_expires_at=until, attempts=Chunk.attempts + 1,
                    started_at=func.coalesce(Chunk.started_at, now), updated_at=now)
        )
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
        stmt = update(Chunk).where(*cond).values(lease_owner=None, lease_expires_at=None, updated_at=now, **values)
        return self._run(stmt).rowcount == 1

    def cancel_queued(self, batch_id: int, now: datetime) -> int:
        stmt = (update(Chunk).where(Chunk.batch_id == batch_id, Chunk.status == "queued")
                .values(status="cancelled", finished_at=now, updated_at=now))
        return self._run(stmt).rowcount or 0

    def requeue_cancelled(self, batch_id: int, now: datetime) -> int:
        stmt = (update(Chunk).where(Chunk.batch_id == batch_id, Chunk.status == "cancelled")
                .values(status="queued", finished_at=None, enqueued_at=now, updated_at=now))
        return self._run(stmt).rowcount or 0

    def record_counts(self, batch_id: int) -> tuple[int, int]:
        """(records done, records failed) as the chunks last reported them."""
        stmt = select(func.coalesce(func.sum(Chunk.n_done), 0), func.coalesce(func.sum(Chunk.n_failed), 0)).where(
            Chunk.batch_id == batch_id)
        done, failed = self.session.execute(stmt).one()
        return int(done), int(failed)

    def count_chunks(self, batch_id: int) -> dict[str, int]:
        stmt = select(Chunk.status, func.count()).where(Chunk.batch_id == batch_id).group_by(Chunk.status)
        return {status: n for status, n in self.session.execute(stmt)}

    def expired_leases(self, now: datetime, batch_id: int | None = None) -> list[tuple[int, int]]:
        stmt = select(Chunk.id, Chunk.batch_id).where(Chunk.status == "leased", Chunk.lease_expires_at < now)
        return [tuple(r) for r in self.session.execute(_for_batch(stmt, batch_id))]  # type: ignore[misc]

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
                .values(status="queued", lease_owner=None, lease_expires_at=None, enqueued_at=now, updated_at=now))
        return self._run(stmt).rowcount == 1

    def unsent_followups(self, cutoff: datetime) -> list[tuple[int, str]]:
        """Follow-ups decided before ``cutoff`` whose message was never confirmed sent (a crash in between)."""
        stmt = select(Batch.id, Batch.then).where(Batch.followup_enqueued_at < cutoff,
                                                  Batch.followup_sent_at.is_(None), Batch.then.is_not(None))
        return [(int(i), str(t)) for i, t in self.session.execute(stmt)]

    def reclaim_followup(self, batch_id: int, cutoff: datetime, now: datetime) -> bool:
        """Take an unsent follow-up for re-sending. Conditional, so of several sweepers exactly one does."""
        stmt = (update(Batch).where(Batch.id == batch_id, Batch.followup_sent_at.is_(None),
                                    Batch.followup_enqueued_at < cutoff).values(followup_enqueued_at=now))
        return self._run(stmt).rowcount == 1

    def mark_followup_sent(self, batch_id: int, now: datetime) -> None:
        self._run(update(Batch).where(Batch.id == batch_id).values(followup_sent_at=now))

    def backend_of_chunk(self, chunk_id: int) -> str | None:
        return self.session.scalar(select(Batch.backend).join(Chunk, Chunk.batch_id == Batch.id)
                                   .where(Chunk.id == chunk_id))

    # --- what a batch produced -----------------------------------------------------------------------
    def spend(self, batch_id: int) -> tuple[int, float]:
        """(tokens, USD) of the drafts this batch wrote."""
        stmt = select(func.coalesce(func.sum(Draft.prompt_tokens + Draft.completion_tokens), 0),
                      func.coalesce(func.sum(Draft.cost_usd), 0.0)).where(Draft.batch_id == batch_id)
        tokens, cost = self.session.execute(stmt).one()
        return int(tokens), float(cost)

    def draft_totals(self, batch_id: int) -> dict[str, Any]:
        stmt = select(func.count(), func.coalesce(func.sum(Draft.prompt_tokens), 0),
                      func.coalesce(func.sum(Draft.completion_tokens), 0),
                      func.coalesce(func.sum(Draft.cost_usd), 0.0)).where(Draft.batch_id == batch_id)
        n, prompt, completion, cost = self.session.execute(stmt).one()
        return dict(drafts=n, prompt_tokens=int(prompt), completion_tokens=int(completion), cost_usd=float(cost))

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

    def batch_record_ids(self, batch_id: int) -> list[int]:
        ids: list[int] = []
        for chunk in self.chunks(batch_id):
            ids.extend(chunk.record_ids)
        return ids

    def stale_candidates(self, stmt_ids: Any, template_name: str, model: str) -> list[tuple[Record, Draft | None]]:
        """Records (from a select of ids) with their current draft for this template and model, if any."""
        join = and_(Draft.record_id == Record.id, Draft.template_name == template_name, Draft.model == model,
                    Draft.is_current.is_(True))
        stmt = (select(Record, Draft).outerjoin(Draft, join)
                .where(Record.id.in_(stmt_ids.order_by(None).limit(None).subquery().select()))
                .order_by(Record.id))
        return [(r, d) for r, d in self.session.execute(stmt)]

    # --- workers ---------------------------------------------------------------------------------------
    def beat(self, hostname: str, now: datetime, **values: Any) -> None:
        row = self.session.get(WorkerHeartbeat, hostname)
        if row is None:
            row = WorkerHeartbeat(hostname=hostname, started_at=now, records_processed=0)
            self.session.add(row)
        for name, value in values.items():
            setattr(row, name, value)
        row.last_seen = now

    def worker_progress(self, hostname: str, chunk_id: int | None, records: int, now: datetime) -> None:
        stmt = (update(WorkerHeartbeat).where(WorkerHeartbeat.hostname == hostname)
                .values(current_chunk_id=chunk_id, last_seen=now,
                        records_processed=WorkerHeartbeat.records_processed + records))
        self._run(stmt)

    def forget_worker(self, hostname: str) -> None:
        self.session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.hostname == hostname))

    def workers(self) -> Sequence[WorkerHeartbeat]:
        return self.session.scalars(select(WorkerHeartbeat).order_by(WorkerHeartbeat.hostname)).all()


def _for_batch(stmt: Any, batch_id: int | None) -> Any:
    return stmt if batch_id is None else stmt.where(Chunk.batch_id == batch_id)

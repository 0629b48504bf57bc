"""The fence around a running chunk: every draft commit proves the chunk is still ours.

A worker that lost its lease (the sweeper gave the chunk to someone else) or whose batch was cancelled or ran
out of budget cannot commit another sub-batch: the lease check runs in the same transaction as the drafts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Any

from generation.run import RunStats
from reasongen.bootstrap import Wiring
from storage.uow import UnitOfWork
from workers.batches import BatchSpec, budget_reason, stop_batch, utcnow


class ChunkStopped(Exception):
    """The chunk may not go on: lease lost, or batch no longer running."""


@dataclass(frozen=True)
class Lease:
    chunk_id: int
    batch_id: int
    owner: str
    attempts: int
    record_ids: tuple[int, ...]


class FencedUnitOfWork:
    """A unit of work whose ``commit`` first renews the lease, in the same transaction."""

    def __init__(self, inner: UnitOfWork, guard: "Guard"):
        self._inner = inner
        self._guard = guard
        self._paid = (0.0, 0)  # cost and tokens of the drafts this transaction would save

    def __enter__(self) -> "FencedUnitOfWork":
        self._inner.__enter__()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self._inner.__exit__(et, e, tb)

    def __getattr__(self, name: str) -> Any:
        if name == "drafts":
            return _CountingDrafts(self._inner.drafts, self)
        return getattr(self._inner, name)

    def commit(self) -> None:
        if not self._guard.renew(self._inner):
            self._inner.rollback()  # first: the renewal share-locked the batch row that discarded() updates
            self._guard.discarded(*self._paid)
            raise ChunkStopped(f"chunk {self._guard.lease.chunk_id}: lease lost or batch stopped")
        self._inner.commit()


class _CountingDrafts:
    """The drafts repository, noting what the rows about to be saved cost (so a refused commit is recorded)."""

    def __init__(self, inner: Any, owner: FencedUnitOfWork):
        self._inner, self._owner = inner, owner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def add_many(self, rows: list[dict[str, Any]]) -> int:
        usd, tokens = self._owner._paid
        self._owner._paid = (usd + sum(r.get("cost_usd") or 0.0 for r in rows),
                             tokens + sum((r.get("prompt_tokens") or 0) + (r.get("completion_tokens") or 0)
                                          for r in rows))
        return int(self._inner.add_many(rows))


class Guard:
    """Lease renewal, progress reporting and budget checks for one claimed chunk."""

    def __init__(self, wiring: Wiring, lease: Lease, batch: BatchSpec, worker: str | None,
                 on_progress: Callable[[RunStats], None] | None = None):
        self.wiring, self.lease, self.batch, self.worker = wiring, lease, batch, worker
        self.stats = RunStats()
        self._on_progress = on_progress
        self._reported = 0
        self.lease_lost: Any = None  # the heartbeat's event: set once another worker holds the lease
        self.budget: Any = None  # workers.budget.Budget: reserves each sub-batch before it is sent

    def uow(self) -> FencedUnitOfWork:
        return FencedUnitOfWork(self.wiring.uow(), self)

    def counts(self) -> dict[str, int]:
        return dict(n_done=self.stats.done + self.stats.skipped, n_failed=self.stats.failed)

    def renew(self, uow: UnitOfWork) -> bool:
        now = utcnow()
        until = now + timedelta(seconds=self.wiring.settings.lease_s)
        ok = uow.chunks.renew_lease(self.lease.chunk_id, self.lease.batch_id, self.lease.owner, now, until,
                                     self.counts())
        if ok:
            self.report_worker(uow, self.lease.chunk_id)
        return ok

    def report_worker(self, uow: UnitOfWork, chunk_id: int | None) -> None:
        """This worker's heartbeat row: the chunk in hand and the records it has processed."""
        if self.worker:
            seen = self.stats.done + self.stats.failed
            uow.heartbeats.progress(self.worker, chunk_id, seen - self._reported, utcnow())
            self._reported = seen

    def should_stop(self) -> bool:
        if self.lease_lost is not None and self.lease_lost.is_set():
            return True
        with self.wiring.uow() as uow:
            ok = self.renew(uow) and uow.batches.status_of(self.lease.batch_id) == "running"
            uow.commit()
        return not ok or self.over_budget()

    def progress(self, stats: RunStats) -> None:
        self.stats = stats
        if self.budget is not None:
            self.budget.release_one()  # a sub-batch was saved: its spend now counts, not its estimate
        if self._on_progress:
            self._on_progress(stats)

    def over_budget(self) -> bool:
        """Reserve the next sub-batch's estimated cost; stop the batch when it does not fit."""
        if self.budget is not None:
            reason = self.budget.reserve()
        else:
            max_cost, max_tokens = self.batch.max_cost_usd, self.batch.max_tokens
            if max_cost is None and max_tokens is None:
                return False
            with self.wiring.uow() as uow:
                reason = budget_reason(max_cost, max_tokens, *uow.batch_stats.spend(self.lease.batch_id))
        if reason is None:
            return False
        stop_batch(self.wiring, self.lease.batch_id, "stopped", reason)
        return True

    def discarded(self, usd: float, tokens: int) -> None:
        """Paid for, thrown away by the fence (lease lost, batch cancelled): counted on the batch."""
        if not usd and not tokens:
            return
        with self.wiring.uow() as uow:
            uow.batches.add_discarded(self.lease.batch_id, usd, tokens)
            uow.commit()

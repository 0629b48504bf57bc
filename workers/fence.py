"""The fence around a running chunk: every draft commit proves the chunk is still ours.

A worker that lost its lease (the sweeper gave the chunk to someone else) or whose batch was cancelled or ran
out of budget cannot commit another sub-batch: the lease check runs in the same transaction as the drafts.

A database outage (PostgreSQL restarting) does not throw away answers already paid for: the fenced unit of
work records the repository calls of its transaction, and when the connection is lost it waits for the
database (up to ``OUTAGE_WAIT_S``), replays them on a new connection and goes on, lease check included.
Before, the chunk gave up and its retry asked the server again for every answer not yet committed. Only a
transaction made of repository calls is replayed (drafts); one that used the session directly (judging) gives
up as before, and ORM objects a repository returned must not be changed in place (the replay would not redo it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Any, TypeVar

from generation.run import RunStats
from reasongen.bootstrap import Wiring
from storage.uow import UnitOfWork
from workers.batches import BatchSpec, budget_reason, stop_batch, utcnow

log = logging.getLogger(__name__)
T = TypeVar("T")
# How long a running chunk waits out a database outage itself before giving up to the task's retry (which
# re-asks the server for whatever was not committed). A PostgreSQL restart takes seconds.
OUTAGE_WAIT_S = 60.0


def _is_outage(exc: BaseException) -> bool:
    from workers.chunks import is_db_outage  # chunks imports this module

    return is_db_outage(exc)


def through_outage(fn: Callable[[], T], on_outage: Callable[[BaseException], None] | None = None) -> T:
    """``fn()``; on a database outage wait (backoff) and call it again, for up to ``OUTAGE_WAIT_S``; after that
    the outage is raised. ``on_outage(exc)`` runs first, and may raise to give up at once."""
    waited, delay = 0.0, 0.5
    while True:
        try:
            return fn()
        except Exception as exc:
            if not _is_outage(exc) or waited >= OUTAGE_WAIT_S:
                raise
            if on_outage is not None:
                on_outage(exc)
            log.warning("database unreachable; retrying in %.1fs (%s)", delay, type(exc).__name__)
            time.sleep(delay)
            waited, delay = waited + delay, min(delay * 2, 5.0)


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
    """A unit of work whose ``commit`` first renews the lease, in the same transaction; it lives through a
    database outage by replaying its transaction's repository calls on a new connection."""

    def __init__(self, inner: UnitOfWork, guard: "Guard"):
        self._inner = inner
        self._guard = guard
        self._paid = (0.0, 0)  # cost and tokens of the drafts this transaction would save
        self._calls: list[tuple[str, str, tuple[Any, ...], dict[str, Any]]] = []  # this transaction's, in order
        self._broken = False
        self._replayable = True  # only repository calls were made: they can be replayed

    def __enter__(self) -> "FencedUnitOfWork":
        self._inner.__enter__()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        try:
            self._inner.__exit__(et, e, tb)
        except Exception as exc:  # noqa: BLE001 - a dead connection cannot even roll back: nothing to undo
            if not _is_outage(exc):
                raise

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if hasattr(value, "session") and not callable(value):  # a repository (not all derive from Repository)
            return _Replayable(self, name)
        self._replayable = False  # e.g. the session itself: what is done with it cannot be replayed
        return value

    def call(self, repo: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if repo == "drafts" and method == "add_many":  # noted once, so a refused commit is recorded
            rows = args[0] if args else kwargs["rows"]
            usd, tokens = self._paid
            self._paid = (usd + sum(r.get("cost_usd") or 0.0 for r in rows),
                          tokens + sum((r.get("prompt_tokens") or 0) + (r.get("completion_tokens") or 0)
                                       for r in rows))
        result = through_outage(lambda: self._apply(repo, method, args, kwargs), self._reopen)
        self._calls.append((repo, method, args, kwargs))
        return result

    def _apply(self, repo: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self._broken:
            self._replay()
        return getattr(getattr(self._inner, repo), method)(*args, **kwargs)

    def _reopen(self, exc: BaseException) -> None:
        """After an outage: the next try starts on a new connection with this transaction replayed; unless
        it did more than repository calls (judging uses the session): then the outage goes up, as before."""
        if not self._replayable:
            raise exc
        self._broken = True

    def _replay(self) -> None:
        self.__exit__(None, None, None)
        self._inner = self._guard.wiring.uow()
        self._inner.__enter__()
        for repo, method, args, kwargs in self._calls:
            getattr(getattr(self._inner, repo), method)(*args, **kwargs)
        self._broken = False

    def commit(self) -> None:
        def fenced() -> bool:
            if self._broken:
                self._replay()
            if not self._guard.renew(self._inner):
                return False
            self._inner.commit()
            return True

        if not through_outage(fenced, self._reopen):
            self._inner.rollback()  # first: the renewal share-locked the batch row that discarded() updates
            self._guard.discarded(*self._paid)
            raise ChunkStopped(f"chunk {self._guard.lease.chunk_id}: lease lost or batch stopped")
        self._calls = []


class _Replayable:
    """A repository of the fenced unit of work: every call is recorded, so it can be replayed."""

    def __init__(self, owner: FencedUnitOfWork, name: str):
        self._owner, self._name = owner, name

    def __getattr__(self, method: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            return self._owner.call(self._name, method, args, kwargs)

        return call


class Guard:
    """Lease renewal, progress reporting and budget checks for one claimed chunk."""

    def __init__(self, wiring: Wiring, lease: Lease, batch: BatchSpec, worker: str | None,
                 on_progress: Callable[[RunStats], None] | None = None):
        self.wiring, self.lease, self.batch, self.worker = wiring, lease, batch, worker
        self.stats = RunStats()
        self._on_progress = on_progress
        self._reported = 0
        self._released = 0  # sub-batches whose budget reservation was released (progress also reports partial saves)
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
        return through_outage(self._should_stop)

    def _should_stop(self) -> bool:
        with self.wiring.uow() as uow:
            ok = self.renew(uow) and uow.batches.status_of(self.lease.batch_id) == "running"
            uow.commit()
        return not ok or self.over_budget()

    def progress(self, stats: RunStats) -> None:
        self.stats = stats
        while self.budget is not None and self._released < stats.sub_batches:
            self.budget.release_one()  # a sub-batch was saved whole: its spend now counts, not its estimate
            self._released += 1
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

"""One chunk's life: claim it with a lease, generate its drafts behind the fence, close it in one transaction.

Every exit path (done, stopped, error, lost lease) is a conditional UPDATE on the chunk, taken together with
``finalize`` so the batch finishes, and its follow-up is handed out, exactly once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from datetime import timedelta
from typing import Any, cast

from generation import breaker, endpoint_state
from generation.feed import Gate, capacity_for
from generation.run import RunStats, default_sub_batch, generate_drafts
from generation.templates import load_template
from judging.step import run_judge_step
from reasongen.bootstrap import Wiring
from storage.uow import UnitOfWork
from workers.batches import BatchSpec, FollowUp, finalize, stop_batch, utcnow
from workers.fence import ChunkStopped, Guard, Lease
from workers.budget import Budget
from workers.heartbeat import Heartbeat

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    chunk_id: int
    state: str  # done | failed | cancelled | retry | skipped | lost
    stats: RunStats | None = None
    followup: FollowUp | None = None
    resend: bool = False
    pid: int = field(default_factory=os.getpid)  # the process that ran it (in-process runs may use several)


def new_owner(worker: str | None = None) -> str:
    """Unique per attempt, so a redelivered message never matches the lease of an earlier attempt."""
    host = worker or socket.gethostname()
    return f"{host}:{os.getpid()}:{threading.get_ident() % 100000}:{uuid.uuid4().hex[:8]}"


def claim(wiring: Wiring, chunk_id: int, owner: str, previous: Sequence[str] = ()) -> Lease | None:
    s = wiring.settings
    now = utcnow()
    with wiring.uow() as uow:
        claimed = uow.chunks.claim(chunk_id, owner, now, now + timedelta(seconds=s.lease_s), s.max_attempts, previous)
        if claimed is None:
            return None
        uow.commit()
    batch_id, attempts, record_ids = claimed
    return Lease(chunk_id, batch_id, owner, attempts, record_ids)


def process_chunk(wiring: Wiring, chunk_id: int, backends: "BackendSource", *, worker: str | None = None,
                  on_progress: Callable[[RunStats], None] | None = None, owner: str | None = None,
                  previous: Sequence[str] = ()) -> Outcome:
    """``previous``: lease owners of earlier deliveries of this same attempt (a retry after a database outage
    takes their lease over, under this worker's own ``owner``)."""
    lease = claim(wiring, chunk_id, owner or new_owner(worker), previous)
    if lease is None:  # done, taken, cancelled, or a duplicate message: all harmless
        return Outcome(chunk_id, "skipped")
    try:
        with heartbeat(wiring, lease) as beat:
            guard = _run(wiring, lease, backends, worker, on_progress, beat)
    except ChunkStopped:
        return close(wiring, lease, None, "cancelled")
    except MissingKeyError as exc:
        log.error("chunk %s: %s", chunk_id, exc)
        return release_after_error(wiring, lease, exc, final=True)
    except Exception as exc:  # noqa: BLE001 - a bug: count the attempt, retry or fail the chunk
        if is_db_outage(exc):
            raise  # not the chunk's fault: the task retries with the same lease owner (workers/tasks.py)
        log.exception("chunk %s attempt %s failed", chunk_id, lease.attempts)
        return release_after_error(wiring, lease, exc)
    return close(wiring, lease, guard, "cancelled" if guard.stats.stopped else "done")


def heartbeat(wiring: Wiring, lease: Lease) -> Heartbeat:
    """Renew the lease while the chunk runs, whatever the sub-batches are doing: every heartbeat interval (at
    most every third of the lease), so the sweeper can tell a chunk nothing runs any more from its silence
    (workers/sweeper.py, ``_orphaned``) without waiting for the lease to run out."""
    s = wiring.settings

    def renew() -> bool:
        now = utcnow()
        with wiring.uow() as uow:
            ok = uow.chunks.touch_lease(lease.chunk_id, lease.owner, now, now + timedelta(seconds=s.lease_s))
            uow.commit()
        return ok

    return Heartbeat(renew, min(s.lease_s / 3, s.heartbeat_interval_s), max_s=s.chunk_time_limit_s, name=f"chunk-{lease.chunk_id}-lease")


def is_db_outage(exc: BaseException) -> bool:
    """A lost or refused database connection (a restart, a failover), as opposed to a bug or bad data."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (OperationalError, InterfaceError))


class BackendSource:
    """Backends by batch, built once per process and shared by its threads (backends are thread-safe), so a
    local model loads once and a teacher's concurrency bound holds for the whole process."""

    def __init__(self, settings: Any):
        self.settings = settings
        self._cache: dict[tuple[Any, ...], Any] = {}
        self._gates: dict[int, Gate] = {}
        self._lock = threading.Lock()

    def get(self, batch: BatchSpec) -> Any:
        """The batch's backend, talking to the batch's endpoint (not whatever this worker's environment says)."""
        from generation.backends import create_backend

        missing = missing_key(batch, self.settings)
        if missing:
            raise MissingKeyError(missing)
        options = dict(batch.params.get("backend_options") or {})
        key = (batch.backend, batch.model, batch.endpoint, repr(sorted(options.items())))
        settings = self.settings
        if batch.endpoint is not None and batch.endpoint != settings.openai_base_url:
            settings = settings.model_copy(update={"openai_base_url": batch.endpoint})
        if batch.backend == "teacher" and batch.concurrency_limit:
            # A worker joining a running batch (restarted after a crash, or added) starts where the workers already
            # on it have probed the endpoint to, not at the cold start's few requests: ramping from 4 took ~10 s
            # at 1.5 s a request (bench/chaos's slow minute). Latency and timeouts still cut it from there.
            options.setdefault("initial_concurrency", batch.concurrency_limit)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = create_backend(batch.backend, settings, model=batch.model, **options)
            return self._cache[key]

    def gate(self, backend: Any, sub_batch: int) -> Gate | None:
        """The feed gate every chunk of this process shares for ``backend`` (None: it cannot overlap work)."""
        capacity = capacity_for(backend, sub_batch)
        if not capacity:
            return None
        with self._lock:
            if id(backend) not in self._gates:  # backends live as long as this source: their ids stay theirs
                self._gates[id(backend)] = Gate(capacity)
            return self._gates[id(backend)]

    def counters(self) -> dict[str, int]:
        """What this process's backends counted (teacher: requests, retries, rate_limited, timeouts...), summed."""
        total: Counter[str] = Counter()
        with self._lock:
            backends = list(self._cache.values())
        for backend in backends:
            total.update(_snapshot(getattr(backend, "counters", None) or {}))
        return dict(total)


def _snapshot(counts: dict[str, int]) -> dict[str, int]:
    # The backend's event loop may add a key while this thread copies: copy again rather than take a lock on
    # every request.
    for _ in range(5):
        try:
            return dict(counts)
        except RuntimeError:
            continue
    return {}


class MissingKeyError(RuntimeError):
    """This worker lacks a key the batch needs: no attempt can succeed here, so the chunk fails at once."""


def missing_key(batch: BatchSpec, settings: Any) -> str | None:
    name = batch.params.get("key_env")
    if not name or settings.api_key():
        return None
    return (f"{name} is not set on this worker ({socket.gethostname()}), and batch {batch.id}'s endpoint "
            f"({batch.endpoint or 'api.openai.com'}) needs it: set {name} in the worker's environment and run: "
            f"reasongen retry-failed {batch.id}")


def _run(wiring: Wiring, lease: Lease, backends: BackendSource, worker: str | None,
         on_progress: Callable[[RunStats], None] | None, beat: Heartbeat) -> Guard:
    with wiring.uow() as uow:
        batch = BatchSpec.of(uow.batches.get(lease.batch_id))
    guard = Guard(wiring, lease, batch, worker, on_progress)
    guard.lease_lost = beat.lost
    if batch.kind == "judge":  # chunks of draft ids, judged (and decided by a policy) in judging/
        guard.stats = run_judge_step(wiring, guard, lease, batch) or guard.stats
        return guard
    template = load_template(batch.template_name, wiring.settings.templates_dir)
    notes = {int(k): v for k, v in (batch.params.get("notes") or {}).items()}
    backend = backends.get(batch)
    size = int(batch.params.get("sub_batch_size") or wiring.settings.sub_batch_size
               or default_sub_batch(backend))
    guard.budget = Budget(wiring, batch, lease.chunk_id, lease.owner, size, getattr(backend, "max_tokens", None))
    pause = partial(stop_batch, wiring, status=endpoint_state.PAUSED)  # the teacher's breaker opened
    # The fenced unit of work forwards every repository of a UnitOfWork and fences its commit.
    fenced = cast(Callable[[], UnitOfWork], guard.uow)
    scope = breaker.SCOPE.set(batch.id)  # this thread's requests are this batch's until the chunk ends
    try:
        guard.stats = generate_drafts(
            fenced, list(lease.record_ids), backend, template, batch_id=batch.id, notes=notes, sub_batch_size=size,
            should_stop=endpoint_state.watching(wiring.uow, batch.id, backend, guard.should_stop, pause),
            on_progress=guard.progress, gate=backends.gate(backend, min(size, len(lease.record_ids))),
        )
        guard.stats.stopped |= endpoint_state.check(wiring.uow, batch.id, backend, pause)
        if batch.params.get("judge") and not guard.stats.stopped:  # generate --judge: judged in the same chunk
            run_judge_step(wiring, guard, lease, batch)
    finally:
        breaker.SCOPE.reset(scope)  # a thread's next chunk (or whatever runs on it next) is not this batch's
    return guard


def close(wiring: Wiring, lease: Lease, guard: Guard | None, state: str) -> Outcome:
    """Close the chunk in one transaction with the batch check; 'lost' when the lease was no longer ours."""
    now = utcnow()
    counts = guard.counts() if guard else {}
    with wiring.uow() as uow:
        batch = uow.batches.lock(lease.batch_id)
        if state == "cancelled" and batch.status == "running":
            return Outcome(lease.chunk_id, "lost")  # stopped because the lease moved on, not the batch
        values: dict[str, Any] = dict(status=state, finished_at=now, **counts)
        if not uow.chunks.finish(lease.chunk_id, lease.owner, now, **values):
            return Outcome(lease.chunk_id, "lost")
        followup = finalize(uow, lease.batch_id, now)
        if guard:
            guard.report_worker(uow, None)
        uow.commit()
    return Outcome(lease.chunk_id, state, guard.stats if guard else None, followup)


def release_after_error(wiring: Wiring, lease: Lease, exc: BaseException, final: bool = False) -> Outcome:
    """Count the failed attempt: back to the queue, or failed after the last attempt (or cancelled, when the
    batch stopped meanwhile, so that it still finishes)."""
    now = utcnow()
    error = f"{type(exc).__name__}: {exc}"[:2000]
    with wiring.uow() as uow:
        batch = uow.batches.lock(lease.batch_id)
        state = next_state(batch.status, wiring.settings.max_attempts if final else lease.attempts,
                           wiring.settings.max_attempts)
        values = dict(enqueued_at=now) if state == "queued" else dict(finished_at=now)
        if not uow.chunks.finish(lease.chunk_id, lease.owner, now, status=state, last_error=error, **values):
            return Outcome(lease.chunk_id, "lost")
        followup = None if state == "queued" else finalize(uow, lease.batch_id, now)
        uow.commit()
    return Outcome(lease.chunk_id, "retry" if state == "queued" else state, followup=followup,
                   resend=state == "queued")


def next_state(batch_status: str, attempts: int, max_attempts: int) -> str:
    """Where a chunk goes after an attempt that did not finish it."""
    if batch_status != "running":
        return "cancelled"
    return "failed" if attempts >= max_attempts else "queued"

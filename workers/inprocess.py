"""Without a broker: the same chunk code, run here, several chunks at once when the backend can take them.

A teacher keeps ``max_in_flight`` requests open, and a chunk has requests in flight only between its submit and
its replies: before that it claims its lease and checks what is already drafted, after it checks the drafts and
commits them behind the fence, then closes. So chunks run in *lanes* (threads, as a teacher worker runs them):
twice as many as the backend's feed gate (generation/feed.py) holds chunks, plus two. Lanes whose database work
is done wait at the gate; each reply frees room for the next of them at once, whatever the other lanes are doing
with the database, so the backend's slots stay full for the whole run. Each chunk keeps its own lease, fence and
per-sub-batch commits, exactly as on a worker. Backends that cannot overlap work (fake, local) get one lane: the
old one-after-another order. A teacher with hundreds of slots is run by several processes, each with lanes over
its share of the slots (workers/inprocess_fork.py: one interpreter cannot keep that many requests in flight).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from generation.feed import Gate, capacity_for
from generation.run import RunStats, default_sub_batch
from reasongen.bootstrap import Wiring
from workers import dispatch, sweeper
from workers import inprocess_fork as forked
from workers.batches import BatchSpec, utcnow
from workers.chunks import BackendSource, Outcome, new_owner, process_chunk

log = logging.getLogger(__name__)

# Lanes waiting at the gate hold no database connection; the others hold one per transaction, and the default pool
# has 15 (the gate's own chunks are mostly waiting on replies, so about half the lanes use the database at once).
MAX_LANES = 24
LANE_TURN_S = 2.0  # a lane waits at most this long for its turn to start (Gate.wait_turn)


@dataclass
class Totals:
    """Progress of a whole batch: finished chunks plus the chunks in hand."""

    done: int = 0
    failed: int = 0
    tokens: int = 0
    cost_usd: float = 0.0

    def plus(self, stats: RunStats | None) -> "Totals":
        if stats is None:
            return self
        return Totals(self.done + stats.done + stats.skipped, self.failed + stats.failed,
                      self.tokens + stats.prompt_tokens + stats.completion_tokens, self.cost_usd + stats.cost_usd)


class _Progress:
    """Totals over every lane, reported from whichever lane just committed."""

    def __init__(self, on_progress: Callable[[Totals], None] | None):
        self._on_progress = on_progress
        self._finished = Totals()
        self._in_hand: dict[int, RunStats] = {}
        self._lock = threading.Lock()

    def reporter(self, chunk_id: int) -> Callable[[RunStats], None]:
        def report(stats: RunStats) -> None:
            with self._lock:
                self._in_hand[chunk_id] = stats
                totals = self._sum()
            if self._on_progress:
                self._on_progress(totals)
        return report

    def finished(self, chunk_id: int, stats: RunStats | None) -> None:
        with self._lock:
            self._in_hand.pop(chunk_id, None)
            self._finished = self._finished.plus(stats)

    def _sum(self) -> Totals:
        totals = self._finished
        for stats in self._in_hand.values():
            totals = totals.plus(stats)
        return totals


def lanes_for(backend: object, chunk_records: int) -> int:
    """Chunks to run at once: the chunks the feed gate admits, as many again doing their database work (claim,
    pending check, checks and fenced commit, close), and two waiting at the gate."""
    capacity = capacity_for(backend, min(chunk_records, default_sub_batch(backend)))
    return lanes_for_capacity(capacity, chunk_records) if capacity else 1


def lanes_for_capacity(capacity: int, chunk_records: int) -> int:
    """``lanes_for`` a feed gate of ``capacity`` records (0: a backend that cannot overlap work, one lane)."""
    return max(1, min(MAX_LANES, 2 * -(-capacity // max(1, chunk_records)) + 2))


def _lanes(backends: BackendSource, batch: BatchSpec, chunk_records: int) -> tuple[int, Gate | None]:
    """How many lanes, and the feed gate they start one after another on (None: all at once)."""
    try:
        backend = backends.get(batch)
    except Exception:  # noqa: BLE001 - each chunk reports it (and counts the attempt), as on a worker
        return 1, None
    return lanes_for(backend, chunk_records), backends.gate(backend, min(chunk_records, default_sub_batch(backend)))


def run_here(wiring: Wiring, batch_id: int, on_progress: Callable[[Totals], None] | None = None, *,
             fresh: bool = False) -> list[Outcome]:
    """Run every open chunk of a batch in this process (and its forked helpers); follow-ups too. ``fresh``: the
    caller planned the batch a moment ago, so nothing of it can be leased, expired or lost yet: no sweep first
    (a resumed batch's dead leases are handed on by it)."""
    if not fresh:
        sweeper.sweep(wiring, batch_id=batch_id, force=True, send=False)
    chunk_ids, largest, batch = _open_chunks(wiring, batch_id)
    progress = _Progress(on_progress)
    lanes = partial(run_lanes, batch=batch, largest=largest)
    processes = forked.processes_for(wiring.settings, batch, len(chunk_ids))
    if processes > 1:
        log.info("batch %s: %d chunks over %d processes", batch_id, len(chunk_ids), processes)
        outcomes = forked.run_forked(wiring, chunk_ids, processes, lanes, progress)
        left, _, _ = _open_chunks(wiring, batch_id)  # a helper that died before it claimed what it took
        if left:  # usually none: no backend (a loop thread, clients) is built just to find that out
            outcomes += lanes(wiring, BackendSource(wiring.settings), iter(left), progress, forked.Hooks())
    else:
        outcomes = lanes(wiring, BackendSource(wiring.settings), iter(chunk_ids), progress, forked.Hooks())
    outcomes.sort(key=lambda o: o.chunk_id)
    for outcome in outcomes:  # one chunk finalised the batch: one follow-up
        if outcome.followup:
            _followup(wiring, *outcome.followup)
    return outcomes


def _open_chunks(wiring: Wiring, batch_id: int) -> tuple[list[int], int, BatchSpec]:
    with wiring.uow() as uow:
        chunks = uow.chunks.for_batch(batch_id, ["queued"])
        largest = max((len(c.record_ids) for c in chunks), default=1)
        return [c.id for c in chunks], largest, BatchSpec.of(uow.batches.get(batch_id))


def run_lanes(wiring: Wiring, backends: BackendSource, chunk_ids: Iterator[int], progress: Any,
              hooks: forked.Hooks, *, batch: BatchSpec, largest: int) -> list[Outcome]:
    """Chunks taken one at a time from ``chunk_ids`` by as many lanes as the backend can keep busy."""
    lanes, gate = _lanes(backends, batch, largest) if largest else (1, None)
    taking = threading.Lock()

    def take() -> int | None:
        with taking:
            return next(chunk_ids, None)

    def one(chunk_id: int) -> Outcome:
        report = progress.reporter(chunk_id)
        while True:
            owner = new_owner()
            hooks.claimed(chunk_id, owner)
            outcome = process_chunk(wiring, chunk_id, backends, on_progress=report, owner=owner)
            if outcome.state != "retry":
                break
        progress.finished(chunk_id, outcome.stats)
        hooks.ended(outcome)
        log.info("chunk %s %s: %s", chunk_id, outcome.state, _brief(outcome.stats))
        return outcome

    def lane(index: int) -> list[Outcome]:
        # Lanes start one after another: each once the lanes before it have handed the backend a sub-batch, so
        # the first requests go out while the later lanes prepare their chunks (see Gate.wait_turn).
        if gate is not None:
            gate.wait_turn(index, LANE_TURN_S)
        outcomes = []
        for chunk_id in iter(take, None):
            outcomes.append(one(chunk_id))
            if gate is not None:
                gate.open()
        if gate is not None:
            gate.open()  # no chunk left to take: the lanes still waiting need not wait
        return outcomes

    if lanes == 1:
        return lane(0)
    with ThreadPoolExecutor(lanes, thread_name_prefix="reasongen-lane") as pool:
        return [o for f in [pool.submit(lane, i) for i in range(lanes)] for o in f.result()]


def _brief(stats: RunStats | None) -> str:
    if stats is None:
        return "no drafts"
    return f"{stats.done} done, {stats.failed} failed, {stats.skipped} skipped, {stats.records_per_s:.1f} rec/s"


class FollowupError(RuntimeError):
    pass


def _followup(wiring: Wiring, batch_id: int, then: str) -> None:
    with wiring.uow() as uow:  # handed out here and now: nothing for a sweeper to re-send
        uow.followups.mark_sent(batch_id, utcnow())
        uow.commit()
    try:
        dispatch.run_followup_here(wiring, batch_id, then)
    except (LookupError, ValueError) as exc:
        raise FollowupError(f"batch {batch_id} finished, but its follow-up '{then}' failed: {exc}") from exc

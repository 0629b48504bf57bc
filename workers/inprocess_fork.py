"""In-process runs over several processes: one interpreter lock per share of a teacher's slots.

At hundreds of requests in flight one interpreter is the bottleneck, not the server: the teacher's event loop
spends about a millisecond of interpreter time per request and the lanes about as much per record on checks
and commits, all under one lock. A test server that answers a wave of 256 requests at once then waits on the
client while it works through the wave, and the server sees far fewer requests in flight than the client holds
(docs/benchmarks.md, "(b) 0.5 s latency"). So `generate` without a broker forks helper processes for a
high-concurrency teacher: each runs lanes over its share of the slots (and of a rate given without Redis to
share it), and every lane of every process takes the next chunk id from one shared counter. Each chunk keeps
its own lease, fence and commits, exactly as on a worker. Children report progress and outcomes over a pipe;
a child that dies leaves its chunk leased to an owner the parent was told of, and the parent takes that lease
over and runs the chunk itself.

Fork, not spawn: a child starts in milliseconds with the parent's imports and language detector, where a fresh
interpreter would take seconds of a run that may last only seconds. Nothing the parent's threads hold is used
in a child: it drops the inherited database pool without closing its sockets and builds its own backends.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from reasongen.bootstrap import Wiring
from reasongen.settings import Settings
from workers.batches import BatchSpec
from workers.chunks import BackendSource, Outcome, new_owner, process_chunk

log = logging.getLogger(__name__)

# Slots one process keeps full: part b's figures show one interpreter falling behind well before 256.
SLOTS_PER_PROCESS = 128
MAX_PROCESSES = 4


def processes_for(settings: Settings, batch: BatchSpec, chunks: int) -> int:
    """How many processes an in-process run of ``batch`` uses: 1 unless a teacher's slots are worth splitting."""
    if batch.kind == "judge" or batch.backend != "teacher" or chunks < 2:
        return 1
    if not settings.database_url.startswith("postgresql") or "fork" not in mp.get_all_start_methods():
        return 1  # SQLite serialises writers across processes anyway; no fork, no cheap helpers
    if settings.inprocess_processes:
        return int(max(1, min(settings.inprocess_processes, chunks)))
    slots = int((batch.params.get("backend_options") or {}).get("concurrency") or settings.teacher_concurrency)
    return int(max(1, min(os.cpu_count() or 1, MAX_PROCESSES, slots // SLOTS_PER_PROCESS, chunks)))


def share_of(settings: Settings, processes: int) -> Settings:
    """One process's settings: its part of the slots, and of a rate that only Redis could share between them."""
    def part(value: int | None) -> int | None:
        return -(-value // processes) if value else value  # ceiling division; unset stays unset

    update: dict[str, Any] = {"teacher_concurrency": part(settings.teacher_concurrency)}
    if not settings.effective_redis_url():
        update.update(teacher_rpm=part(settings.teacher_rpm), teacher_tpm=part(settings.teacher_tpm))
    return settings.model_copy(update=update)


@dataclass
class Shared:
    """What every process's lanes share: the chunk ids and a counter of the next one to take."""

    chunk_ids: list[int]
    next_index: Any = field(default_factory=lambda: mp.get_context("fork").Value("i", 0))

    def take(self) -> int | None:
        with self.next_index.get_lock():
            i = int(self.next_index.value)
            if i >= len(self.chunk_ids):
                return None
            self.next_index.value = i + 1
        return self.chunk_ids[i]

    def ids(self) -> Iterator[int]:
        while (chunk_id := self.take()) is not None:
            yield chunk_id


class Hooks:
    """What a lane tells about each chunk: the lease owner it claims with (before), and the outcome (after)."""

    def claimed(self, chunk_id: int, owner: str) -> None:
        pass

    def ended(self, outcome: Outcome) -> None:
        pass


Runner = Callable[[Wiring, BackendSource, Iterator[int], Any, Hooks], list[Outcome]]


def run_forked(wiring: Wiring, chunk_ids: list[int], processes: int, run_lanes: Runner,
               progress: Any) -> list[Outcome]:
    """Run the chunks in this process and ``processes - 1`` forked ones; the outcomes of all of them."""
    shared, ctx = Shared(chunk_ids), mp.get_context("fork")
    settings = share_of(wiring.settings, processes)
    children = [_fork(ctx, wiring, settings, shared, run_lanes) for _ in range(processes - 1)]
    readers = [_Reader(conn, progress) for _, conn in children]
    here = Wiring(settings, wiring.engine, wiring.uow)
    outcomes = run_lanes(here, BackendSource(settings), shared.ids(), progress, Hooks())
    for (proc, _), reader in zip(children, readers, strict=True):
        reader.join()
        proc.join()
        outcomes += reader.outcomes
        for chunk_id, owner in reader.unfinished().items():  # the child died holding it: take its lease over
            log.warning("a helper process (exit %s) left chunk %s unfinished: running it here", proc.exitcode,
                        chunk_id)
            outcomes.append(_take_over(here, chunk_id, owner, progress))
    return outcomes


def _fork(ctx: Any, wiring: Wiring, settings: Settings, shared: Shared, run_lanes: Runner) -> tuple[Any, Connection]:
    parent_end, child_end = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(wiring, settings, shared, run_lanes, child_end), daemon=True,
                       name="reasongen-lanes")
    proc.start()
    child_end.close()
    return proc, parent_end


def _child(wiring: Wiring, settings: Settings, shared: Shared, run_lanes: Runner, conn: Connection) -> None:
    wiring.engine.dispose(close=False)  # the parent's connections stay the parent's
    sender = _Sender(conn)
    run_lanes(Wiring(settings, wiring.engine, wiring.uow), BackendSource(settings), shared.ids(), sender, sender)
    sender.send("done")
    conn.close()
    logging.shutdown()  # flush what the lanes logged
    os._exit(0)  # everything is reported: no reason to wait on the threads a backend leaves behind


class _Sender(Hooks):
    """In a child: progress, claims and outcomes of its chunks, sent to the parent as they happen (so a child
    that dies has told what it held, and every chunk it finished, with any follow-up, is already reported)."""

    def __init__(self, conn: Connection):
        self.conn, self.lock = conn, threading.Lock()

    def send(self, *message: Any) -> None:
        with self.lock:
            self.conn.send(message)

    def reporter(self, chunk_id: int) -> Callable[[Any], None]:
        return lambda stats: self.send("progress", chunk_id, stats)

    def finished(self, chunk_id: int, stats: Any) -> None:
        pass  # the outcome says it

    def claimed(self, chunk_id: int, owner: str) -> None:
        self.send("owner", chunk_id, owner)

    def ended(self, outcome: Outcome) -> None:
        self.send("outcome", outcome)


class _Reader(threading.Thread):
    """In the parent: one child's messages, fed into the run's progress as they come."""

    def __init__(self, conn: Connection, progress: Any):
        super().__init__(name="reasongen-lanes-reader", daemon=True)
        self.conn, self.progress = conn, progress
        self.outcomes: list[Outcome] = []
        self.owners: dict[int, str] = {}
        self.finished = False
        self.start()

    def run(self) -> None:
        try:
            while not self.finished:
                self._take(*self.conn.recv())
        except (EOFError, OSError):
            return  # the child died: unfinished() says what it held

    def _take(self, kind: str, *rest: Any) -> None:
        if kind == "owner":
            self.owners[rest[0]] = rest[1]
        elif kind == "progress":
            self.progress.reporter(rest[0])(rest[1])
        elif kind == "outcome":
            self.outcomes.append(rest[0])
            self.progress.finished(rest[0].chunk_id, rest[0].stats)
        elif kind == "done":
            self.finished = True

    def unfinished(self) -> dict[int, str]:
        ended = {o.chunk_id for o in self.outcomes if o.state != "retry"}
        return {} if self.finished else {c: o for c, o in self.owners.items() if c not in ended}


def _take_over(wiring: Wiring, chunk_id: int, owner: str, progress: Any) -> Outcome:
    outcome = process_chunk(wiring, chunk_id, BackendSource(wiring.settings), owner=new_owner(), previous=(owner,),
                            on_progress=progress.reporter(chunk_id))
    progress.finished(chunk_id, outcome.stats)
    return outcome

"""The feed gate: how many records may be handed to a backend at once, shared by every chunk of a process.

A teacher keeps ``max_in_flight`` requests open, and the server only sees requests the chunks have submitted.
Chunks spend part of their life on the database (claim, pending check, fenced commit, close), and a chunk in
those steps has nothing in flight. So a process runs more chunks than the backend's slots need, and each chunk
waits here, its database work done, until the records already submitted leave room for its records. The
moment a record's reply is in, its room goes to the next waiting chunk, before the finished one starts its
checks and commit: the backend always has a queue of records ready for the next free slot, and the database
work of one chunk never takes requests out of flight.

The gate admits up to ``capacity`` records: the backend's concurrency plus a margin of records queued behind
the slots (so a slot that frees finds the next record already waiting on the event loop, without a thread
hand-off). Without a gate, extra chunks would send everything they hold at once: more records bought before a
cancel or a lost lease can stop them, and leases ticking while records wait in the backend's queue.

A sub-batch is admitted whole (its records then start together and can be saved together), but each record's
place frees the moment that record's draft is done, not when its whole sub-batch is: a straggler (a hung
request, a chain of retries) holds one place, not its sub-batch's fifty.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any


class Gate:
    def __init__(self, capacity: int):
        self.capacity = max(1, capacity)
        self.in_use = 0
        self.peak = 0  # most records admitted at once (tests and benches read it)
        self.admitted = 0  # sub-batches admitted so far (lanes start one after another on it: wait_turn)
        self.primed = False  # full once, or a sub-batch had to wait, or opened: the slots are spoken for
        self._cond = threading.Condition()
        self._waiting: list[int] = []  # sizes of the sub-batches waiting for room (release wakes them only if one fits)

    def acquire(self, n: int) -> None:
        """Wait until ``n`` more records fit (a sub-batch larger than the whole gate waits for an empty gate)."""
        if n <= 0:
            return
        with self._cond:
            if not self._fits(n):
                self.primed = True
                self._waiting.append(n)
                try:
                    self._cond.wait_for(lambda: self._fits(n))
                finally:
                    self._waiting.remove(n)
            self.in_use += n
            self.peak = max(self.peak, self.in_use)
            self.admitted += 1
            self.primed |= self.in_use >= self.capacity
            self._cond.notify_all()

    def wait_turn(self, before: int, timeout: float) -> None:
        """A lane starts its first chunk once ``before`` sub-batches are in (those of the lanes started before
        it), once the gate is primed, or after ``timeout``: lanes starting together would share the interpreter
        and the database, and every one of them would hand the backend its first requests late."""
        with self._cond:
            self._cond.wait_for(lambda: self.admitted >= before or self.primed, timeout)

    def open(self) -> None:
        """Let every lane still waiting for its turn start (a chunk ended, or none is left to take)."""
        with self._cond:
            self.primed = True
            self._cond.notify_all()

    def _fits(self, n: int) -> bool:
        return self.in_use + n <= self.capacity or self.in_use == 0

    def release(self, n: int) -> None:
        """Each record's place as its reply comes in. The waiting lanes are woken only when the smallest waiting
        sub-batch now fits: waking every lane on every reply (most of them to find 49 places short) made each
        wave of replies a stampede of threads on the interpreter the event loop needs for the next requests."""
        if n <= 0:
            return
        with self._cond:
            self.in_use -= n
            if self._waiting and self._fits(min(self._waiting)):
                self._cond.notify_all()

    def hold_each(self, records: "Sequence[Future[Any]]") -> None:
        """Each record keeps its place until its own future is done (however it ends: reply, error, cancel)."""
        for future in records:
            future.add_done_callback(lambda _: self.release(1))


def submit_records(backend: Any, prompts: Sequence[Any], gate: Gate | None) -> "list[Future[Any]]":
    """Hand ``prompts`` to ``backend`` once ``gate`` has room for them all (None: at once); one future per record.

    The caller's database work is done, so it waits here holding no connection."""
    if gate is None or not prompts:
        return per_record(backend, prompts)
    gate.acquire(len(prompts))
    try:
        started = per_record(backend, prompts)
    except BaseException:
        gate.release(len(prompts))
        raise
    gate.hold_each(started)
    return started


def per_record(backend: Any, prompts: Sequence[Any]) -> "list[Future[Any]]":
    """Per-record futures from whatever the backend offers: ``submit_each`` (the teacher), ``submit`` (one future
    for the lot, split when it is done), or ``generate`` (run here, now)."""
    if not prompts:
        return []
    if hasattr(backend, "submit_each"):
        return list(backend.submit_each(prompts))
    parts: list[Future[Any]] = [Future() for _ in prompts]
    if hasattr(backend, "submit"):
        backend.submit(prompts).add_done_callback(lambda whole: _split(whole, parts))
    else:
        for part, result in zip(parts, backend.generate(prompts), strict=True):
            part.set_result(result)
    return parts


def _split(whole: "Future[Any]", parts: "list[Future[Any]]") -> None:
    if whole.cancelled():
        for part in parts:
            part.cancel()
        return
    error = whole.exception()
    for i, part in enumerate(parts):
        if error is not None:
            part.set_exception(error)
        else:
            part.set_result(whole.result()[i])


def capacity_for(backend: Any, sub_batch: int) -> int:
    """The backend's concurrency plus two sub-batches waiting behind its slots; None-like (0) for backends that
    cannot overlap work, which need no gate."""
    if not hasattr(backend, "submit"):
        return 0
    return gate_capacity(int(getattr(backend, "max_in_flight", sub_batch)), sub_batch)


def gate_capacity(slots: int, sub_batch: int) -> int:
    """The slots plus two sub-batches queued behind them."""
    return slots + 2 * sub_batch

"""The feed gate: how many records may be handed to a backend at once, shared by every chunk of a process.

A teacher keeps ``max_in_flight`` requests open, and the server only sees requests the chunks have submitted.
Chunks spend part of their life on the database (claim, pending check, fenced commit, close), and a chunk in
those steps has nothing in flight. So a process runs more chunks than the backend's slots need, and each chunk
waits here, its database work done, until the records already submitted leave room for its sub-batch. The
moment a sub-batch's replies are in, its room goes to the next waiting chunk, before the finished one starts
its checks and commit: the backend always has a queue of records ready for the next free slot, and the
database work of one chunk never takes requests out of flight.

The gate admits up to ``capacity`` records: the backend's concurrency plus a margin of records queued behind
the slots (so a slot that frees finds the next record already waiting on the event loop, without a thread
hand-off). Without a gate, extra chunks would send everything they hold at once: more records bought before a
cancel or a lost lease can stop them, and leases ticking while records wait in the backend's queue.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any


class Gate:
    def __init__(self, capacity: int):
        self.capacity = max(1, capacity)
        self.in_use = 0
        self.peak = 0  # most records admitted at once (tests and benches read it)
        self._cond = threading.Condition()

    def acquire(self, n: int) -> None:
        """Wait until ``n`` more records fit (a sub-batch larger than the whole gate waits for an empty gate)."""
        if n <= 0:
            return
        with self._cond:
            self._cond.wait_for(lambda: self.in_use + n <= self.capacity or self.in_use == 0)
            self.in_use += n
            self.peak = max(self.peak, self.in_use)

    def release(self, n: int) -> None:
        if n <= 0:
            return
        with self._cond:
            self.in_use -= n
            self._cond.notify_all()

    def hold(self, n: int, results: "Future[Any]") -> None:
        """Admit ``n`` records until ``results`` is done (however it ends: replies, error or cancellation)."""
        results.add_done_callback(lambda _: self.release(n))


def capacity_for(backend: Any, sub_batch: int) -> int:
    """The backend's concurrency plus two sub-batches waiting behind its slots; None-like (0) for backends that
    cannot overlap work, which need no gate."""
    if not hasattr(backend, "submit"):
        return 0
    return int(getattr(backend, "max_in_flight", sub_batch)) + 2 * sub_batch

"""The feed gate counts places per record: a record's place frees when that record is done, not its sub-batch."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

from generation.feed import Gate, submit_records


def test_gate_frees_each_records_place_as_that_record_finishes():
    """Capacity 4, a first sub-batch of 4 holds it all; when 3 of its records are done (one straggling), a
    second sub-batch of 3 is admitted. The old gate freed the 4 places only when all 4 were done."""

    class Backend:
        max_in_flight = 2

        def __init__(self) -> None:
            self.futures: list[Future[str]] = []

        def submit(self, prompts: Any) -> Any:  # the teacher's one-future-per-sub-batch API (unused here)
            raise NotImplementedError

        def submit_each(self, prompts: Any) -> list[Future[str]]:
            new = [Future() for _ in prompts]
            self.futures += new
            return new

    backend, gate = Backend(), Gate(4)
    first = submit_records(backend, ["a", "b", "c", "d"], gate)
    assert gate.in_use == 4
    admitted = threading.Event()
    second = threading.Thread(target=lambda: (submit_records(backend, ["e", "f", "g"], gate), admitted.set()),
                              daemon=True)
    second.start()
    for future in first[:2]:
        future.set_result("done")
    assert not admitted.wait(0.2)  # 2 places free, 3 wanted: still waiting
    first[2].set_result("done")  # 3 free while "d" straggles
    assert admitted.wait(10)
    assert gate.in_use == 4 and not first[3].done()
    first[3].set_result("late")
    for future in backend.futures[4:]:
        future.set_result("done")
    second.join(10)
    assert gate.in_use == 0


def test_a_release_wakes_the_waiting_lanes_only_when_a_sub_batch_fits():
    """Capacity 60, full; a lane waits to put 50 in. Replies free one place at a time: the lane is woken once,
    when 50 places are free, not on each of the 50 replies (each wake-up is a thread taking the interpreter
    from the event loop while a wave of replies comes in)."""
    gate = Gate(60)
    gate.acquire(60)
    wakes = [0]
    notify_all = gate._cond.notify_all

    def counted() -> None:
        wakes[0] += 1
        notify_all()

    gate._cond.notify_all = counted  # type: ignore[method-assign]
    admitted = threading.Event()
    waiter = threading.Thread(target=lambda: (gate.acquire(50), admitted.set()), daemon=True)
    waiter.start()
    assert not admitted.wait(0.1)  # the lane is waiting
    for _ in range(49):
        gate.release(1)
    assert not admitted.wait(0.1) and wakes[0] == 0  # 49 free: nobody woken
    gate.release(1)
    assert admitted.wait(2) and gate.in_use == 60
    assert wakes[0] == 2  # the release that let it in, and its own admission (for lanes waiting their turn)

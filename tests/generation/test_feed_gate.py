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

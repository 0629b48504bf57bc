"""In-process generation keeps the backend's slots full across chunk boundaries."""

from __future__ import annotations

import statistics
import threading
import time

from sqlalchemy import func, select

from reasongen.bootstrap import bootstrap
from reasongen.settings import Settings
from storage.models import Draft
from tests.helpers import add_records
from workers.inprocess import lanes_for, run_here
from workers.planning import BatchRequest, plan_batch


class _Submitting:
    max_in_flight = 256

    def submit(self, prompts):  # type: ignore[no-untyped-def]
        raise NotImplementedError


def test_lanes_cover_the_gate_twice_plus_two_chunks():
    assert lanes_for(_Submitting(), 50) == 18  # gate: 256 slots + 2 x 50 queued = 356 -> 8 chunks; 2 x 8 + 2
    assert lanes_for(object(), 50) == 1  # a backend that cannot overlap work runs one chunk at a time
    small = _Submitting()
    small.max_in_flight = 10
    assert lanes_for(small, 50) == 2 * 3 + 2  # a gate of 110 = 10 + 2 x 50: counted as 3 chunks
    assert lanes_for(small, 5) == 2 * 4 + 2  # a gate of 20 = 10 + 2 x 5: 4 chunks


def test_requests_in_flight_stay_at_the_concurrency_across_small_chunks(db_url, stub):
    url, handle = stub(latency_s=0.2)
    settings = Settings(database_url=db_url, broker_url=None, templates_dir=None, openai_base_url=url,
                        openai_api_key="test-key-not-secret", teacher_concurrency=24,
                        teacher_adaptive=False)  # a fixed 24 places: this is about feeding them, not sizing them
    wired = bootstrap(settings)
    try:
        with wired.uow() as uow:
            add_records(uow, "ds", [{"instruction": f"What is {i} + 1?", "key": f"k{i}"} for i in range(96)])
        planned = plan_batch(wired, BatchRequest(dataset="ds", backend="teacher", chunk_size=6))
        outcomes = run_here(wired, planned.batch_id)
        assert [o.state for o in outcomes] == ["done"] * 16
        with wired.uow() as uow:
            assert uow.session.scalar(select(func.count()).select_from(Draft).where(Draft.status == "pending")) == 96
        # One chunk at a time would never have more than its 6 records in flight.
        assert handle.stats()["max_in_flight"] >= 22, handle.stats()
    finally:
        wired.close()


def _sample_in_flight(handle, samples: list[int], done: threading.Event) -> None:  # type: ignore[no-untyped-def]
    while not done.is_set():
        samples.append(int(handle.stats().get("in_flight", 0)))
        time.sleep(0.005)


def test_the_server_sees_the_configured_concurrency_for_the_whole_run(db_url, stub):
    """Chunks of 4 against 32 places: a chunk has requests in flight only between its submit and its replies,
    and spends the rest of its life on the database (claim, pending check, fenced commit, close), so chunks that
    keep their records through that leave places empty. What is asserted is the server's own count of requests
    in flight, not a duration."""
    url, handle = stub(latency_s=0.3)
    settings = Settings(database_url=db_url, broker_url=None, templates_dir=None, openai_base_url=url,
                        openai_api_key="test-key-not-secret", teacher_concurrency=32, teacher_adaptive=False)
    wired = bootstrap(settings)
    samples: list[int] = []
    done = threading.Event()
    try:
        with wired.uow() as uow:
            add_records(uow, "ds", [{"instruction": f"What is {i} + 2?", "key": f"k{i}"} for i in range(480)])
        planned = plan_batch(wired, BatchRequest(dataset="ds", backend="teacher", chunk_size=4))
        sampler = threading.Thread(target=_sample_in_flight, args=(handle, samples, done), daemon=True)
        sampler.start()
        outcomes = run_here(wired, planned.batch_id)
        done.set()
        sampler.join()
        assert [o.state for o in outcomes] == ["done"] * 120  # per-chunk leases and commits, each chunk closed
        with wired.uow() as uow:
            assert uow.session.scalar(select(func.count()).select_from(Draft).where(Draft.status == "pending")) == 480
        busy = [n for n in samples if n > 0]
        steady = busy[len(busy) // 10: len(busy) * 9 // 10]  # without the first and last waves
        assert max(busy) == 32, max(busy)
        # One chunk at a time holds at most its 4 records in flight; lanes behind the gate keep most of the 32
        # places busy. The figure (>= 0.9 x the places) is the bench's target (bench/teacher_bench.py, part b);
        # this asserts the design with a margin that a loaded CI machine keeps (medians of 24-30 seen under load).
        assert statistics.median(steady) >= 0.6 * 32, (statistics.median(steady), steady)
    finally:
        done.set()
        wired.close()

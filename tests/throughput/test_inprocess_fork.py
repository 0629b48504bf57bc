"""In-process runs of a high-concurrency teacher over several processes (workers/inprocess_fork.py)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading

import pytest
from sqlalchemy import func, select

from reasongen.bootstrap import bootstrap
from reasongen.settings import Settings
from storage.models import Batch, Draft
from tests.helpers import add_records
from workers.batches import BatchSpec
from workers.inprocess import Totals, run_here
from workers.inprocess_fork import processes_for, share_of
from workers.planning import BatchRequest, plan_batch

KEY = "test-key-not-secret"


def _settings(db_url: str, url: str, **extra: object) -> Settings:
    return Settings(database_url=db_url, broker_url=None, redis_url=None, templates_dir=None, openai_base_url=url,
                    openai_api_key=KEY, teacher_adaptive=False, **extra)


def _plan(wired, n: int, chunk_size: int) -> int:  # type: ignore[no-untyped-def]
    with wired.uow() as uow:
        add_records(uow, "ds", [{"instruction": f"What is {i} + 1?", "key": f"k{i}"} for i in range(n)])
    return plan_batch(wired, BatchRequest(dataset="ds", backend="teacher", chunk_size=chunk_size)).batch_id


def test_processes_follow_the_slots_and_split_what_only_redis_could_share(pg_url):
    base = Settings(database_url=pg_url, broker_url=None, redis_url=None, teacher_concurrency=256, teacher_rpm=3000)
    batch = _spec("teacher")
    assert processes_for(base, batch, 10) == min(os.cpu_count() or 1, 2)
    assert processes_for(base.model_copy(update={"teacher_concurrency": 64}), batch, 10) == 1
    assert processes_for(base, _spec("fake"), 10) == 1 and processes_for(base, batch, 1) == 1
    assert processes_for(base.model_copy(update={"database_url": "sqlite:///x.db"}), batch, 10) == 1
    assert processes_for(base.model_copy(update={"inprocess_processes": 3}), batch, 10) == 3
    half = share_of(base, 2)
    assert (half.teacher_concurrency, half.teacher_rpm) == (128, 1500)  # each process paces its own half
    shared = share_of(base.model_copy(update={"redis_url": "redis://127.0.0.1:6379/0"}), 2)
    assert (shared.teacher_concurrency, shared.teacher_rpm) == (128, 3000)  # Redis paces them as one


def _spec(backend: str) -> BatchSpec:
    return BatchSpec(1, "generate", backend, "m", "reason", {}, None, None)


def test_two_processes_draft_every_record_once_and_report_all_progress(pg_url, stub):
    url, handle = stub(latency_s=0.05)
    wired = bootstrap(_settings(pg_url, url, teacher_concurrency=16, inprocess_processes=2))
    try:
        batch_id = _plan(wired, 120, 10)
        seen: list[Totals] = []
        outcomes = run_here(wired, batch_id, on_progress=seen.append)
        assert sorted(o.state for o in outcomes) == ["done"] * 12
        assert len({o.pid for o in outcomes}) == 2 and os.getpid() in {o.pid for o in outcomes}  # both ran chunks
        with wired.uow() as uow:
            current = uow.session.scalar(select(func.count(func.distinct(Draft.record_id)))
                                         .where(Draft.is_current.is_(True), Draft.status == "pending"))
            assert current == 120 and uow.session.get(Batch, batch_id).status == "done"
        assert handle.stats()["requests"] == 120  # nothing asked twice
        assert seen and max(t.done for t in seen) == 120  # the helper's chunks reached the parent's progress
    finally:
        wired.close()


def test_a_helper_killed_mid_run_loses_nothing_its_chunk_is_taken_over(pg_url, stub, caplog):
    url, handle = stub(latency_s=0.3)
    wired = bootstrap(_settings(pg_url, url, teacher_concurrency=8, inprocess_processes=2))
    killed: list[int] = []

    def kill_the_helper() -> None:
        while not killed:
            for child in multiprocessing.active_children():
                if child.name == "reasongen-lanes" and handle.stats().get("requests", 0) >= 12:
                    os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
                    killed.append(child.pid)  # type: ignore[arg-type]
            threading.Event().wait(0.02)

    try:
        batch_id = _plan(wired, 80, 4)
        threading.Thread(target=kill_the_helper, daemon=True).start()
        outcomes = run_here(wired, batch_id)
        assert killed, "the helper was never seen"
        assert "unfinished: running it here" in caplog.text  # its leased chunk was taken over, not left to expire
        assert {o.state for o in outcomes} <= {"done", "skipped"} and sum(o.state == "done" for o in outcomes) == 20
        with wired.uow() as uow:
            current = uow.session.scalar(select(func.count()).select_from(Draft).where(Draft.is_current.is_(True)))
            states = uow.chunks.count(batch_id)
            assert current == 80 and uow.session.get(Batch, batch_id).status == "done", states
    finally:
        wired.close()


@pytest.mark.parametrize("processes", [1, 2])
def test_the_outcomes_come_back_in_chunk_order_whatever_ran_them(pg_url, stub, processes):
    url, _ = stub()
    wired = bootstrap(_settings(pg_url, url, teacher_concurrency=8, inprocess_processes=processes))
    try:
        batch_id = _plan(wired, 30, 3)
        outcomes = run_here(wired, batch_id)
        assert [o.chunk_id for o in outcomes] == sorted(o.chunk_id for o in outcomes)
        assert len(outcomes) == 10
    finally:
        wired.close()


def test_lanes_start_one_after_another_on_the_sub_batches_the_gate_admits(pg_url, stub):
    """Lanes starting together would share the interpreter and the database, and each would hand the backend
    its first requests late: a lane claims its first chunk once the lanes before it have a sub-batch in."""
    from workers.chunks import BackendSource
    from workers.inprocess import _lanes, run_lanes
    from workers.inprocess_fork import Hooks

    url, _ = stub(latency_s=0.3)
    wired = bootstrap(_settings(pg_url, url, teacher_concurrency=20, inprocess_processes=1))
    try:
        batch_id = _plan(wired, 200, 10)
        with wired.uow() as uow:
            batch = BatchSpec.of(uow.batches.get(batch_id))
            chunk_ids = [c.id for c in uow.chunks.for_batch(batch_id)]
        backends = BackendSource(wired.settings)
        lanes, gate = _lanes(backends, batch, 10)
        assert gate is not None and lanes > 2
        seen: list[tuple[int, bool]] = []  # (sub-batches admitted, primed) at each claim, in order

        class Watch(Hooks):
            def claimed(self, chunk_id: int, owner: str) -> None:
                seen.append((gate.admitted, gate.primed))

        class Quiet:
            def reporter(self, chunk_id: int):  # type: ignore[no-untyped-def]
                return lambda stats: None

            def finished(self, chunk_id: int, stats: object) -> None:
                pass

        outcomes = run_lanes(wired, backends, iter(chunk_ids), Quiet(), Watch(), batch=batch, largest=10)
        assert sorted(o.state for o in outcomes) == ["done"] * 20
        first_claims = seen[:lanes]
        # the k-th lane to start found k sub-batches in, or the gate already spoken for (old lanes: all found 0)
        assert all(admitted >= k or primed for k, (admitted, primed) in enumerate(first_claims)), first_claims
        assert first_claims[1][0] >= 1
    finally:
        wired.close()

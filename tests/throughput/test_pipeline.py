"""In-process generation keeps the backend's slots full across chunk boundaries."""

from __future__ import annotations

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


def test_lanes_cover_the_backends_slots_plus_two_chunks():
    assert lanes_for(_Submitting(), 50) == 8  # 256 slots / 50 records = 5.1 -> 6 chunks, plus two
    assert lanes_for(object(), 50) == 1  # a backend that cannot overlap work runs one chunk at a time
    small = _Submitting()
    small.max_in_flight = 10
    assert lanes_for(small, 50) == 3


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

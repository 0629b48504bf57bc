"""A teacher worker started without --concurrency runs as many chunks at once as an in-process run gives its
teacher lanes (10 for 64 requests in flight and chunks of 50), not a fixed 4: chunks waiting on stragglers or on
the database leave others to keep the backend's slots full. Counted at the server, with every request held."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from reasongen.testing.openai_server import start_stub_server
from storage.models import Draft
from tests.helpers import add_records
from tests.queue.conftest import wait_for
from workers import dispatch
from workers.planning import BatchRequest, plan_batch

pytestmark = pytest.mark.slow


def test_a_default_teacher_worker_runs_more_than_four_chunks_at_once(queue_wired, start_worker, monkeypatch):
    base_url, stub = start_stub_server(hang_rate=1.0)  # every request is held until the test lets them go
    try:
        with queue_wired.uow() as uow:
            add_records(uow, "ds", [{"instruction": f"Question {i}?", "key": f"k{i}"} for i in range(12)])
        monkeypatch.setattr(queue_wired.settings, "openai_base_url", base_url)
        planned = plan_batch(queue_wired, BatchRequest(dataset="ds", backend="teacher", chunk_size=1))
        dispatch.send_chunks(queue_wired.settings, planned.chunk_ids, planned.backend)
        start_worker(concurrency=0, env={"OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "test-key-not-secret",
                                         "REASONGEN_TEACHER_ADAPTIVE": "false", "REASONGEN_TEACHER_TIMEOUT": "120"})
        # One record per chunk: requests held at once = chunks running at once (4 threads: never more than 4).
        wait_for(lambda: stub.stats()["in_flight"] >= 10, 60, what="10 chunks' requests held at once")
        stub.configure(hang_rate=0.0)
        stub._loop.call_soon_threadsafe(stub.server.hang.set)  # held requests are dropped, and asked again
        wait_for(lambda: _drafts(queue_wired) == 12, 60, what="every record drafted")
    finally:
        stub.stop()


def _drafts(wired) -> int:  # type: ignore[no-untyped-def]
    with wired.uow() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(Draft).where(Draft.status == "pending")) or 0)

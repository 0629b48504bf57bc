"""Hard budgets (issue 10, item 6): every sub-batch reserves its estimated cost before it is sent, so chunks
running in parallel on real workers cannot overshoot `--max-cost`; work the fence throws away (a cancel
while sub-batches are in flight) is still counted as spent on the batch."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from reasongen.testing.openai_server import start_stub_server
from tests.helpers import add_records
from tests.queue.conftest import wait_for
from tests.queue.test_workers import finished, ready, scalar
from workers import batches, dispatch, monitor
from workers.planning import BatchRequest, plan_batch

pytestmark = pytest.mark.slow
MODEL = "gpt-4o-mini"  # priced in the default settings


def _batch(wired, monkeypatch, base_url: str, n: int, **req) -> int:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(wired.settings, "openai_base_url", base_url)
    monkeypatch.setattr(wired.settings, "openai_api_key", SecretStr("sk-x"))
    with wired.uow() as uow:
        add_records(uow, "ds", [{"instruction": f"Explain step {i} of the method in detail.", "key": f"k{i}"}
                                for i in range(n)])
    planned = plan_batch(wired, BatchRequest(dataset="ds", backend="teacher", model=MODEL, **req))
    dispatch.send_chunks(wired.settings, planned.chunk_ids, planned.backend)
    return planned.batch_id


def test_parallel_chunks_never_spend_past_max_cost(queue_wired, start_worker, monkeypatch):
    base_url, stub = start_stub_server(latency_s=0.3)
    try:
        env = {"OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "sk-x", "REASONGEN_TEACHER_MAX_TOKENS": "200",
               "REASONGEN_LEASE_SECONDS": "30"}
        a, b = start_worker(concurrency=3, env=env), start_worker(concurrency=3, env=env)
        ready(queue_wired, a, b)
        max_cost = 0.0008
        batch_id = _batch(queue_wired, monkeypatch, base_url, 60, chunk_size=4, sub_batch_size=2,
                          max_cost=max_cost)
        batch = wait_for(lambda: finished(queue_wired, batch_id), 90, what="batch end")
        summary = monitor.batch_summary(queue_wired, batch_id)
        assert batch.status == "stopped" and batch.reason.startswith("budget reached"), batch
        assert 0 < summary["done"] < 60
        assert summary["cost_usd"] + summary["discarded_usd"] <= max_cost  # hard: reserved before sent
        with queue_wired.uow() as uow:
            assert uow.chunks.reserved(batch_id) == (0.0, 0)  # every reservation released
    finally:
        stub.stop()


def test_work_the_fence_discards_is_counted(queue_wired, start_worker, monkeypatch):
    base_url, stub = start_stub_server(latency_s=1.5)
    try:
        env = {"OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "sk-x", "REASONGEN_LEASE_SECONDS": "30"}
        w = start_worker(concurrency=1, env=env)
        ready(queue_wired, w)
        batch_id = _batch(queue_wired, monkeypatch, base_url, 12, chunk_size=12, sub_batch_size=2)
        from sqlalchemy import func, select

        from storage.models import Draft

        wait_for(lambda: scalar(queue_wired, select(func.count()).select_from(Draft)), 60, every=0.05,
                 what="first sub-batch saved")
        batches.cancel(queue_wired, batch_id)  # the sub-batches already sent come back to a closed fence
        wait_for(lambda: finished(queue_wired, batch_id), 60, what="batch end")
        summary = monitor.batch_summary(queue_wired, batch_id)
        assert summary["status"] == "cancelled"
        assert summary["discarded_tokens"] > 0 and summary["discarded_usd"] > 0, summary
    finally:
        stub.stop()

"""The breaker on real `reasongen worker` processes: a server failing every request pauses the batch after about
N requests (not retries x records), `status` names the server's message, and resume finishes it once fixed."""

from __future__ import annotations

import time

import pytest
from pydantic import SecretStr

from reasongen.testing.openai_server import start_stub_server
from tests.helpers import add_records
from tests.queue.conftest import broker_url, queue_settings, queue_wired, start_worker, wait_for  # noqa: F401
from tests.queue.test_workers import finished, ready
from workers import batches, dispatch, monitor, sweeper
from workers.planning import BatchRequest, plan_batch

pytestmark = pytest.mark.slow
THRESHOLD = 4


def teacher_worker(queue_wired, start_worker, monkeypatch, base_url: str) -> None:  # type: ignore[no-untyped-def]
    """A worker (two threads, one backend) on the stub at ``base_url``, and this process planning for it."""
    env = {"OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "sk-x", "REASONGEN_TEACHER_BREAKER": str(THRESHOLD),
           "REASONGEN_LEASE_SECONDS": "30"}
    ready(queue_wired, start_worker(concurrency=2, env=env))
    monkeypatch.setattr(queue_wired.settings, "openai_base_url", base_url)
    monkeypatch.setattr(queue_wired.settings, "openai_api_key", SecretStr("sk-x"))


def test_a_permanent_error_pauses_a_queued_batch_and_resume_finishes_it(queue_wired, start_worker, monkeypatch):
    base_url, stub = start_stub_server(error_rate=1.0, error_message="model 'm' has no chat template")
    try:
        teacher_worker(queue_wired, start_worker, monkeypatch, base_url)
        with queue_wired.uow() as uow:
            add_records(uow, "ds", [{"instruction": f"Question {i}?", "key": f"k{i}"} for i in range(40)])
        planned = plan_batch(queue_wired, BatchRequest(dataset="ds", backend="teacher", model="m", chunk_size=5))
        dispatch.send_chunks(queue_wired.settings, planned.chunk_ids, planned.backend)

        batch = wait_for(lambda: finished(queue_wired, planned.batch_id), 90, what="the batch to pause")
        assert batch.status == "paused", batch
        assert "circuit breaker open" in batch.reason and "model 'm' has no chat template" in batch.reason
        sent = stub.stats()["requests"]
        assert sent <= 4 * THRESHOLD, f"{sent} requests for 40 records (7 attempts each would be 280)"

        stub.configure(error_rate=0.0)  # the server is fixed
        time.sleep(6)  # the user takes a moment: a breaker open this long closes when a chunk starts again
        batches.reopen(queue_wired, planned.batch_id)
        sweeper.sweep(queue_wired, batch_id=planned.batch_id, force=True)
        batch = wait_for(lambda: finished(queue_wired, planned.batch_id), 90, what="the resumed batch to end")
        summary = monitor.batch_summary(queue_wired, planned.batch_id)
        assert batch.status == "done" and summary["done"] == 40 and summary["failed"] == 0, summary
        assert summary["teacher"]["response_mode"].startswith("json_schema")
        assert summary["teacher"]["concurrency_limit"] >= 1
    finally:
        stub.stop()


def test_one_batchs_permanent_error_pauses_that_batch_only(queue_wired, start_worker, monkeypatch):
    """Two batches on one endpoint in one worker process (one backend, shared by its threads): every request
    of batch A fails the same way (its prompts carry the server's error marker), batch B's all succeed. A pauses
    with the server's message; B finishes every record."""
    base_url, stub = start_stub_server(latency_s=0.1, error_message="prompt rejected by the server's filter")
    try:
        teacher_worker(queue_wired, start_worker, monkeypatch, base_url)
        with queue_wired.uow() as uow:
            add_records(uow, "bad", [{"instruction": f"[[stub:error]] Q{i}?", "key": f"a{i}"} for i in range(20)])
            add_records(uow, "good", [{"instruction": f"Question {i}?", "key": f"b{i}"} for i in range(40)])
        bad = plan_batch(queue_wired, BatchRequest(dataset="bad", backend="teacher", model="m", chunk_size=5))
        good = plan_batch(queue_wired, BatchRequest(dataset="good", backend="teacher", model="m", chunk_size=5))
        order = [c for pair in zip(good.chunk_ids, bad.chunk_ids) for c in pair] + good.chunk_ids[len(bad.chunk_ids):]
        dispatch.send_chunks(queue_wired.settings, order, good.backend)  # both batches' chunks side by side

        paused = wait_for(lambda: finished(queue_wired, bad.batch_id), 90, what="batch A to pause")
        done = wait_for(lambda: finished(queue_wired, good.batch_id), 90, what="batch B to end")
        assert paused.status == "paused" and "prompt rejected by the server's filter" in paused.reason
        summary = monitor.batch_summary(queue_wired, good.batch_id)
        assert done.status == "done" and summary["done"] == 40 and summary["failed"] == 0, (done, summary)
    finally:
        stub.stop()

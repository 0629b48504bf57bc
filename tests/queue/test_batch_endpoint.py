"""The teacher endpoint travels with the batch (issue 10, item 7): workers use the batch's OPENAI_BASE_URL and
model, never the key from the database; a worker without the key the batch needs fails the chunk at once,
naming the variable; `generate --backend teacher` with neither key nor base URL refuses up front."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from cli.main import app
from reasongen.testing.openai_server import start_stub_server
from storage.models import Batch
from tests.helpers import add_records
from tests.queue.conftest import wait_for
from tests.queue.test_workers import assert_one_draft_per_record, finished, ready
from workers import dispatch, monitor
from workers.planning import BatchRequest, plan_batch

KEY = "sk-test-" + "k3y" * 6


@pytest.fixture
def stub():  # type: ignore[no-untyped-def]
    base_url, handle = start_stub_server(api_key=KEY)
    yield base_url, handle
    handle.stop()


def _teacher_batch(wired, monkeypatch, base_url: str, n: int = 6) -> int:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(wired.settings, "openai_base_url", base_url)
    monkeypatch.setattr(wired.settings, "openai_api_key", __import__("pydantic").SecretStr(KEY))
    with wired.uow() as uow:
        add_records(uow, "ds", [{"instruction": f"Q{i}?", "key": f"k{i}"} for i in range(n)])
    planned = plan_batch(wired, BatchRequest(dataset="ds", backend="teacher", model="stub-model", chunk_size=3))
    dispatch.send_chunks(wired.settings, planned.chunk_ids, planned.backend)
    return planned.batch_id


@pytest.mark.slow
def test_workers_use_the_batchs_endpoint_and_model_not_their_own(queue_wired, start_worker, stub, monkeypatch):
    base_url, handle = stub
    batch_id = _teacher_batch(queue_wired, monkeypatch, base_url)
    with queue_wired.uow() as uow:
        batch = uow.session.get(Batch, batch_id)
        assert (batch.endpoint, batch.model) == (base_url, "stub-model")
        assert KEY not in repr([tuple(r) for r in uow.session.execute(select(Batch.__table__))])
    # This worker's own environment points at nothing: it must use the batch's endpoint.
    w = start_worker(env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": KEY,
                          "REASONGEN_TEACHER_MODEL": "other-model"})
    batch = wait_for(lambda: finished(queue_wired, batch_id), 60, what="batch end")
    assert batch.status == "done", (batch.reason, w.log_path.read_text()[-2000:])
    assert_one_draft_per_record(queue_wired, 6)
    assert handle.stats()["requests"] >= 6


@pytest.mark.slow
def test_a_worker_without_the_key_fails_the_chunk_at_once_naming_it(queue_wired, start_worker, stub,
                                                                     monkeypatch):
    base_url, handle = stub
    batch_id = _teacher_batch(queue_wired, monkeypatch, base_url)
    started = time.monotonic()
    w = start_worker(env={"OPENAI_API_KEY": ""})
    ready(queue_wired, w)
    batch = wait_for(lambda: finished(queue_wired, batch_id), 60, what="batch end")
    assert time.monotonic() - started < 45  # no timeouts and retries
    assert batch.status == "failed"
    summary = monitor.batch_summary(queue_wired, batch_id)
    assert "OPENAI_API_KEY is not set on this worker" in summary["errors"][0]["error"]
    with queue_wired.uow() as uow:
        assert [c.attempts for c in uow.chunks.for_batch(batch_id)] == [1, 1]
    assert handle.stats().get("requests", 0) == 0


def test_teacher_without_key_or_base_url_refuses_up_front(wired, db_url, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("REASONGEN_BROKER_URL", raising=False)
    with wired.uow() as uow:
        add_records(uow, "ds", [{"instruction": "Q?"}])
    result = CliRunner().invoke(app, ["--database-url", db_url, "generate", "--dataset", "ds"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --backend teacher needs OPENAI_BASE_URL"), lines
    with wired.uow() as uow:
        assert uow.batches.recent() == []  # nothing planned, nothing sent

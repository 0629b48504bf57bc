"""A worker at --loglevel INFO logs its chunks, not every HTTP request."""

from __future__ import annotations

import subprocess
import sys
import uuid

from sqlalchemy import func, select

from reasongen.bootstrap import bootstrap
from storage.models import Batch, Draft
from tests.helpers import add_records
from tests.queue.conftest import REASONGEN, worker_env
from workers import dispatch
from workers.planning import BatchRequest, plan_batch


def test_a_worker_at_info_logs_chunks_not_requests(queue_settings, stub, tmp_path):
    url, handle = stub()
    queue_settings = queue_settings.model_copy(update={"openai_base_url": url})
    wired = bootstrap(queue_settings)
    log_path = tmp_path / "worker.log"
    name = f"quiet-{uuid.uuid4().hex[:6]}@test"
    env = worker_env(queue_settings, OPENAI_BASE_URL=url, OPENAI_API_KEY="test-key-not-secret")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([REASONGEN, "worker", "--queues", "teacher", "--hostname", name, "--loglevel", "INFO",
                                 "--concurrency", "2"], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        with wired.uow() as uow:
            add_records(uow, "ds", [{"instruction": f"Question {i}?", "key": f"k{i}"} for i in range(40)])
        planned = plan_batch(wired, BatchRequest(dataset="ds", backend="teacher", chunk_size=20))
        dispatch.send_chunks(queue_settings, planned.chunk_ids, planned.backend)
        _wait_finished(wired, planned.batch_id, proc, log_path)
        with wired.uow() as uow:
            assert uow.session.scalar(select(func.count()).select_from(Draft)) == 40
    finally:
        proc.terminate()
        proc.wait(30)
        wired.close()
    text = log_path.read_text()
    assert handle.stats()["status_200"] >= 40
    assert "chat/completions" not in text and "HTTP Request" not in text, text[-2000:]
    assert text.count("reasongen.run_chunk") >= 2, text[-2000:]  # each chunk is logged (received, succeeded)


def _wait_finished(wired, batch_id, proc, log_path) -> None:  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with wired.uow() as uow:
            if uow.session.get(Batch, batch_id).finished_at is not None:
                return
        if proc.poll() is not None:
            raise AssertionError(f"worker exited: {log_path.read_text()[-2000:]}", file=sys.stderr)
        time.sleep(0.1)
    raise AssertionError(f"batch not finished; worker log: {log_path.read_text()[-2000:]}")


def test_requests_show_at_debug_only(caplog):
    import logging

    from workers.app import quiet_request_logs

    quiet_request_logs()
    root = logging.getLogger()
    old = root.level
    try:
        root.setLevel(logging.INFO)
        with caplog.at_level(logging.INFO):
            logging.getLogger("httpx").info("HTTP Request: POST /v1/chat/completions")
        assert not [r for r in caplog.records if r.name == "httpx"]
        root.setLevel(logging.DEBUG)
        with caplog.at_level(logging.DEBUG):
            logging.getLogger("httpx").info("HTTP Request: POST /v1/chat/completions")
            logging.getLogger("httpx").warning("connection pool is full")
        assert [(r.levelname, r.getMessage()[:12]) for r in caplog.records if r.name == "httpx"] == [
            ("DEBUG", "HTTP Request"), ("WARNING", "connection p")]
    finally:
        root.setLevel(old)

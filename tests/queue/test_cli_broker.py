"""The broker path of the CLI: generate --wait, status, workers, resume, against real workers."""

from __future__ import annotations

import json
import subprocess

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from cli.main import app
from cli.live import follow
from storage.models import Batch
from tests.helpers import add_records
from tests.queue.conftest import REASONGEN, wait_for, worker_env
from tests.queue.test_workers import ready
from workers import dispatch, monitor
from workers.planning import BatchRequest, plan_batch

pytestmark = pytest.mark.slow
runner = CliRunner()


def cli(settings, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), env=worker_env(settings))


def test_generate_wait_status_and_workers_with_real_workers(queue_wired, start_worker):
    settings = queue_wired.settings
    with queue_wired.uow() as uow:
        add_records(uow, "ds", [{"instruction": f"Q{i}", "key": f"k{i}"} for i in range(12)])
    w = start_worker(concurrency=3)
    ready(queue_wired, w)
    live = json.loads(cli(settings, "workers", "--json").output)
    mine = [x for x in live["workers"] if x["hostname"] == w.hostname]
    assert mine and mine[0]["queues"] == [f"{settings.queue_prefix}teacher"] and mine[0]["concurrency"] == 3
    assert set(live["queues"]) == {"teacher", "gpu", "train"}

    result = cli(settings, "generate", "--dataset", "ds", "--backend", "fake", "--chunk-size", "4", "--wait",
                 "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (summary["status"], summary["done"], summary["chunks"]) == ("done", 12, {"done": 3})

    status = json.loads(cli(settings, "status", str(summary["batch"]), "--json").output)
    assert status["done"] == 12 and status["pending"] == 0 and status["eta_s"] is None
    after = json.loads(cli(settings, "workers", "--json").output)
    assert [x["records_processed"] for x in after["workers"] if x["hostname"] == w.hostname][0] >= 8

    resumed = cli(settings, "resume", str(summary["batch"]))
    assert resumed.exit_code == 2 and "is done; nothing to resume" in resumed.output


def test_queued_batch_without_workers_is_resumed_by_hand(queue_wired, start_worker):
    settings = queue_wired.settings
    with queue_wired.uow() as uow:
        add_records(uow, "ds", [{"instruction": f"Q{i}", "key": f"k{i}"} for i in range(4)])
    result = cli(settings, "generate", "--dataset", "ds", "--backend", "fake", "--chunk-size", "2")
    assert result.exit_code == 0 and "2 chunks queued" in result.output
    held = cli(settings, "resume", "1", "--json")
    assert json.loads(held.output)["resent"] == []  # the broker still holds both messages: nothing to re-send
    shown = cli(settings, "status")  # nothing would ever take them: status says so, and what to start
    assert ("batch 1: 2 chunk(s) queued on 'teacher', but no live worker consumes it; start one with: reasongen "
            "worker --queues teacher") in " ".join(shown.output.split())
    ready(queue_wired, start_worker(queues="train"))  # a worker, but not for this queue
    assert json.loads(cli(settings, "status", "1", "--json").output)["no_worker_on"] == "teacher"
    import redis

    redis.Redis.from_url(settings.broker_url).flushdb()  # the messages are lost before any worker starts
    resumed = cli(settings, "resume", "1", "--json")
    assert json.loads(resumed.output)["resent"] == [1, 2]
    ready(queue_wired, start_worker())
    waited = cli(settings, "status", "1", "--watch")
    assert waited.exit_code == 0 and "done" in waited.output
    assert json.loads(cli(settings, "status", "1", "--json").output)["no_worker_on"] is None


def test_retry_failed_on_workers_reruns_only_the_failed_records(queue_wired, start_worker):
    settings = queue_wired.settings
    with queue_wired.uow() as uow:
        ids = add_records(uow, "ds", [{"instruction": f"Q{i}", "key": f"k{i}"} for i in range(10)])
    ready(queue_wired, start_worker(concurrency=2))
    planned = plan_batch(queue_wired, BatchRequest(dataset="ds", backend="fake", chunk_size=3,
                                                   backend_options={"fail_keys": ["k2", "k5"]}))
    dispatch.send_chunks(settings, planned.chunk_ids, planned.backend)
    follow(queue_wired, planned.batch_id, quiet=True, interval=0.1)
    first = monitor.batch_summary(queue_wired, planned.batch_id)
    assert (first["status"], first["done"], first["failed"]) == ("done", 8, 2)
    with queue_wired.uow() as uow:  # the outage that failed them is over
        uow.session.execute(update(Batch).values(params={"backend_options": {}}))
        uow.commit()
    retried = json.loads(cli(settings, "retry-failed", str(planned.batch_id), "--wait", "--json").output)
    assert (retried["kind"], retried["total"], retried["done"], retried["failed"]) == ("retry", 2, 2, 0)
    with queue_wired.uow() as uow:
        current = uow.batch_stats.current_drafts(ids, "reason", "fake-teacher")
        assert sorted(d.status for d in current.values()) == ["pending"] * 10


def test_generate_wait_exits_1_when_records_failed(queue_wired, start_worker):
    from reasongen.testing.openai_server import start_stub_server

    base_url, stub = start_stub_server(refusal_rate=0.5, seed=5)
    try:
        with queue_wired.uow() as uow:
            add_records(uow, "ds", [{"instruction": f"Q{i}", "key": f"k{i}"} for i in range(10)])
        w = start_worker(concurrency=2, env={"OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "sk-x"})
        ready(queue_wired, w)
        env = dict(worker_env(queue_wired.settings), OPENAI_BASE_URL=base_url, OPENAI_API_KEY="sk-x")
        result = runner.invoke(app, ["generate", "--dataset", "ds", "--backend", "teacher", "--chunk-size", "5",
                                     "--wait"], env=env)
        summary = monitor.batch_summary(queue_wired, 1)
        assert summary["finished"] and 0 < summary["failed"] < 10, summary
        assert result.exit_code == 1, result.output
        assert f"{summary['failed']} of 10 records failed" in result.output.strip().splitlines()[-1]
    finally:
        stub.stop()


def test_generate_wait_without_a_worker_says_which_to_start_then_finishes_when_one_comes(queue_wired, start_worker,
                                                                                      tmp_path):
    settings = queue_wired.settings
    with queue_wired.uow() as uow:
        add_records(uow, "ds", [{"instruction": f"Q{i}", "key": f"k{i}"} for i in range(4)])
    out = tmp_path / "wait.out"
    with open(out, "w") as sink:
        proc = subprocess.Popen([REASONGEN, "generate", "--dataset", "ds", "--backend", "fake", "--wait"],
                                env=worker_env(settings, COLUMNS="200"), stdout=sink, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: "no live worker consumes queue 'teacher'" in out.read_text(), 30,
                     what="the no-worker warning")
            ready(queue_wired, start_worker())
            assert proc.wait(timeout=60) == 0, out.read_text()
        finally:
            proc.kill()
    text = out.read_text()
    assert "start one with: reasongen worker --queues teacher" in text and "4 done, 0 failed" in text

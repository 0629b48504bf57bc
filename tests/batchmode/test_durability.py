"""Durable batch mode: real `reasongen worker` processes poll the provider jobs from their sweepers; every
worker is killed and PostgreSQL and Redis (private ones, so the shared services are untouched) are restarted
while a job runs on the provider. The batch completes: no request lost, none paid twice."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bench.chaos.services import PG_BIN, PrivatePostgres, PrivateRedis
from reasongen.bootstrap import bootstrap
from reasongen.settings import Settings
from storage.migrate import upgrade
from storage.models import Draft, Judgement
from tests.batchmode.conftest import KEY, ROWS, plan
from workers import provider_jobs

ROOT = Path(__file__).resolve().parents[2]
REASONGEN = str(Path(sys.executable).with_name("reasongen"))
pytestmark = [pytest.mark.slow, pytest.mark.skipif(PG_BIN is None, reason="PostgreSQL server binaries not found")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(check, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception:  # noqa: BLE001 - the database is restarting
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def private():  # type: ignore[no-untyped-def]
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="rg-batchmode-"))  # not under pytest's 0700 folder: postgres runs as itself
    root.chmod(0o755)
    pg, redis = PrivatePostgres(root / "pg", _free_port()), PrivateRedis(root, _free_port())
    pg.start()
    redis.start()
    yield pg, redis
    redis.stop()
    pg.stop()
    shutil.rmtree(root, ignore_errors=True)


def _plan_stage(wired, stage: str) -> int:  # type: ignore[no-untyped-def]
    """A generate batch of 40 records and 2 identical twins, or (judge) a judge batch of their 42 fake drafts."""
    if stage == "generate":
        return plan(wired, ROWS, twins=2)
    from judging.plan import JudgeRequest, plan_judge_batch
    from workers.inprocess import run_here

    run_here(wired, plan(wired, ROWS, twins=2, backend="fake", model=None))
    return plan_judge_batch(wired, JudgeRequest(dataset="ds", backend="teacher", model="gpt-4o-mini")).batch_id


@pytest.mark.parametrize("stage", ["generate", "judge"])
def test_jobs_survive_killed_workers_and_restarted_postgres_and_redis(server, private, tmp_path, stage):
    pg, redis = private
    url, handle = server(batch_seconds=6.0)
    upgrade(pg.url)
    settings = Settings(database_url=pg.url, broker_url=redis.url, openai_base_url=url, openai_api_key=KEY,
                        redis_url=None, batch_poll_min_s=0.2, batch_poll_max_s=0.5)
    wired = bootstrap(settings)
    batch_id = _plan_stage(wired, stage)
    provider_jobs.start(wired, batch_id)  # what `generate/judge --mode batch` does: stored, then submitted
    wired.close()
    env = dict(os.environ, PYTHONPATH=str(ROOT), REASONGEN_DATABASE_URL=pg.url, REASONGEN_BROKER_URL=redis.url,
               OPENAI_BASE_URL=url, OPENAI_API_KEY=KEY, REASONGEN_SWEEP_INTERVAL="0.3",
               REASONGEN_HEARTBEAT_INTERVAL="0.3", REASONGEN_BATCH_POLL_MIN="0.2", REASONGEN_BATCH_POLL_MAX="0.5")
    workers: list[subprocess.Popen] = []

    def start_worker(name: str) -> None:
        log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        workers.append(subprocess.Popen([REASONGEN, "worker", "--queues", "teacher", "--hostname", f"{name}@t",
                                         "--loglevel", "WARNING"], env=env, cwd=tmp_path, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True))

    try:
        start_worker("a")
        start_worker("b")
        _wait(lambda: handle.stats().get("batch_polls", 0) >= 2, 60, "the workers' sweepers to poll")
        for proc in workers:  # every worker (and with it every poller) killed mid-job
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        redis.restart_empty()
        pg.crash(down_s=0.5)
        start_worker("c")
        wired = bootstrap(settings)
        batch = _wait(lambda: _finished(wired, batch_id), 120, "the batch to finish")
        assert batch == "done"
        with wired.uow() as uow:
            if stage == "generate":
                results = uow.session.execute(select(Draft.record_id, func.count()).where(Draft.batch_id == batch_id)
                                              .group_by(Draft.record_id)).all()
            else:
                results = uow.session.execute(select(Judgement.draft_id, func.count())
                                              .where(Judgement.batch_id == batch_id, Judgement.error.is_(None))
                                              .group_by(Judgement.draft_id)).all()
            assert uow.provider_jobs.request_counts(batch_id) == {"done": 42}
        wired.close()
        # generate: 40 requested + 2 identical copies; judge: one judgement per key (the twins' drafts share it)
        assert len(results) == (42 if stage == "generate" else 40) and all(n == 1 for _, n in results)
        stats = handle.stats()
        assert (stats["batch_jobs_created"], stats["batch_files_uploaded"]) == (1, 1)
        assert stats["batch_lines_paid"] == 40 and stats.get("batch_lines_repeated", 0) == 0
    finally:
        for proc in workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def _finished(wired, batch_id: int) -> str | None:  # type: ignore[no-untyped-def]
    with wired.uow() as uow:
        batch = uow.batches.get(batch_id)
        return batch.status if batch.finished_at else None

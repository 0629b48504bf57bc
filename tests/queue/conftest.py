"""Fixtures for queue tests: a private Redis db and queue prefix per test, real `reasongen worker` processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reasongen.bootstrap import bootstrap
from reasongen.settings import Settings
from tests.services import REDIS_URL

ROOT = Path(__file__).resolve().parents[2]
REASONGEN = str(Path(sys.executable).with_name("reasongen"))
# Our own Redis db: FLUSHDB in these tests touches nothing of other suites (which use db 0).
QUEUE_REDIS_DB = int(os.environ.get("REASONGEN_TEST_QUEUE_REDIS_DB", "11"))
FAST = dict(lease_s=2.0, sweep_interval_s=0.5, requeue_after_s=1.0, heartbeat_interval_s=0.5, max_attempts=3,
            chunk_time_limit_s=60, visibility_timeout_s=120)


def wait_for(check: Callable[[], object], timeout: float = 30.0, every: float = 0.1, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def broker_url(redis_url: str) -> str:
    return REDIS_URL.rsplit("/", 1)[0] + f"/{QUEUE_REDIS_DB}"


@pytest.fixture
def queue_settings(pg_url: str, broker_url: str) -> Settings:
    return Settings(database_url=pg_url, broker_url=broker_url, queue_prefix=f"t{uuid.uuid4().hex[:8]}-",
                    worker_imports=["tests.queue.slow_backend"], **FAST)


@pytest.fixture
def queue_wired(queue_settings: Settings):  # type: ignore[no-untyped-def]
    import tests.queue.slow_backend  # noqa: F401 - the test process plans batches with it too

    wired = bootstrap(queue_settings)
    yield wired
    wired.close()


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), REASONGEN_DATABASE_URL=settings.database_url,
               REASONGEN_BROKER_URL=settings.broker_url or "", REASONGEN_QUEUE_PREFIX=settings.queue_prefix,
               REASONGEN_WORKER_IMPORTS='["tests.queue.slow_backend"]',
               REASONGEN_LEASE_SECONDS=str(settings.lease_s), REASONGEN_SWEEP_INTERVAL=str(settings.sweep_interval_s),
               REASONGEN_REQUEUE_AFTER=str(settings.requeue_after_s),
               REASONGEN_HEARTBEAT_INTERVAL=str(settings.heartbeat_interval_s),
               REASONGEN_MAX_ATTEMPTS=str(settings.max_attempts),
               REASONGEN_CHUNK_TIME_LIMIT=str(settings.chunk_time_limit_s),
               REASONGEN_VISIBILITY_TIMEOUT=str(settings.visibility_timeout_s))
    env.update(extra)
    return env


@pytest.fixture
def start_worker(queue_settings: Settings, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start `reasongen worker` processes (own process group each); all are killed at teardown."""
    procs: list[subprocess.Popen] = []

    def start(queues: str = "teacher", concurrency: int = 1, name: str | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen:
        name = name or f"w{len(procs)}-{uuid.uuid4().hex[:6]}@test"
        log_path = tmp_path / f"{name.split('@')[0]}.log"
        log = open(log_path, "w")  # noqa: SIM115 - closed with the process
        cmd = [REASONGEN, "worker", "--queues", queues, "--hostname", name, "--loglevel", "WARNING"]
        if concurrency and queues == "teacher":
            cmd += ["--concurrency", str(concurrency)]
        proc = subprocess.Popen(cmd, env=worker_env(queue_settings, **(env or {})), cwd=tmp_path, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        proc.hostname, proc.log_path = name, log_path  # type: ignore[attr-defined]
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def kill_worker(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)

"""PostgreSQL restarting mid-batch delays work but drops no message: a task that loses its connection is
retried with backoff and takes its own lease back, instead of being acked and left to the sweeper (issue 10,
item 5). A private PostgreSQL cluster (bench/chaos/services.py) so it can be restarted freely."""

from __future__ import annotations

import shutil
import socket
import tempfile
import uuid
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bench.chaos.services import PG_BIN, PrivatePostgres
from reasongen.settings import Settings
from storage.migrate import upgrade
from storage.models import Chunk
from tests.queue.conftest import FAST, wait_for
from tests.queue.test_workers import assert_one_draft_per_record, enqueue, finished, ready, scalar

pytestmark = [pytest.mark.slow, pytest.mark.skipif(PG_BIN is None, reason="PostgreSQL server binaries missing")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def private_pg():  # type: ignore[no-untyped-def]
    root = Path(tempfile.mkdtemp(prefix="reasongen-pg-", dir="/tmp"))
    root.chmod(0o755)  # the postgres user runs the server
    pg = PrivatePostgres(root, _free_port())
    pg.start()
    upgrade(pg.url)
    yield pg
    pg.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def queue_settings(private_pg, broker_url: str) -> Settings:  # overrides conftest: the private database
    # The lease and the sweeper are slow on purpose: the batch must not wait for them to recover a chunk.
    slow_recovery = dict(FAST, lease_s=120.0, requeue_after_s=120.0, sweep_interval_s=120.0)
    return Settings(database_url=private_pg.url, broker_url=broker_url, queue_prefix=f"t{uuid.uuid4().hex[:8]}-",
                    worker_imports=["tests.queue.slow_backend"], **slow_recovery)


def test_a_postgres_restart_mid_batch_loses_no_message(queue_wired, start_worker, private_pg):
    a = start_worker(concurrency=2)
    ready(queue_wired, a)
    batch_id = enqueue(queue_wired, 16, chunk_size=4, sub_batch_size=1, backend_options={"delay_s": 0.4})
    wait_for(lambda: scalar(queue_wired, select(func.sum(Chunk.n_done)).where(Chunk.batch_id == batch_id)), 30,
             every=0.05, what="first commits")
    private_pg.outage(3.0)  # every connection of the worker is cut mid-chunk, and none works for 3 s
    batch = wait_for(lambda: _finished_or_none(queue_wired, batch_id), 60, every=0.5, what="batch end")
    assert batch.status == "done", batch.reason
    assert_one_draft_per_record(queue_wired, 16)
    with queue_wired.uow() as uow:
        chunks = uow.chunks.for_batch(batch_id)
        assert all(c.attempts == 1 for c in chunks), [c.attempts for c in chunks]  # an outage is no attempt


def _finished_or_none(wired, batch_id: int):  # type: ignore[no-untyped-def]
    try:
        return finished(wired, batch_id)
    except Exception:  # noqa: BLE001 - the test's own connection may be cut by the restart too
        return None


def test_answers_that_arrive_during_a_postgres_restart_are_not_paid_again(queue_wired, start_worker, private_pg,
                                                                          tmp_path):
    # The outage hits while sub-batches are being generated: their commits fail. The fenced unit of work waits
    # for the database and replays its transaction, so each record is generated (paid) once; before, the chunk
    # gave up and its retry asked again for every answer not yet committed.
    calls = tmp_path / "generated.txt"
    a = start_worker(concurrency=2)
    ready(queue_wired, a)
    batch_id = enqueue(queue_wired, 24, chunk_size=6, sub_batch_size=1,
                       backend_options={"delay_s": 0.4, "calls_file": str(calls)})
    wait_for(lambda: scalar(queue_wired, select(func.sum(Chunk.n_done)).where(Chunk.batch_id == batch_id)), 30,
             every=0.05, what="first commits")
    private_pg.outage(3.0)
    batch = wait_for(lambda: _finished_or_none(queue_wired, batch_id), 60, every=0.5, what="batch end")
    assert batch.status == "done", batch.reason
    assert_one_draft_per_record(queue_wired, 24)
    generated = Counter(calls.read_text().split())
    assert len(generated) == 24 and set(generated.values()) == {1}, generated.most_common(3)

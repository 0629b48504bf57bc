"""What a restarted worker's start-up sweep did reaches the worker's log file (a real worker process, its
output in a file as systemd, the chaos bench and tests/queue/conftest.py's start_worker write it)."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from storage.models import Chunk, WorkerHeartbeat
from tests.queue.conftest import wait_for
from tests.queue.test_workers import enqueue, finished, scalar

pytestmark = pytest.mark.slow


def test_a_restarted_workers_start_up_sweep_is_in_its_log_file(queue_wired, start_worker):
    from workers.batches import utcnow
    from workers.chunks import claim, new_owner

    name = "restarted@test"
    batch_id = enqueue(queue_wired, 2, chunk_size=2, sub_batch_size=2)
    chunk_id = scalar(queue_wired, select(Chunk.id).where(Chunk.batch_id == batch_id))
    dead = new_owner(name).replace(f":{os.getpid()}:", ":999999:")  # the killed process of the same name
    assert claim(queue_wired, chunk_id, dead) is not None
    with queue_wired.uow() as uow:  # a stale chunk: leased for minutes more by a process that is gone
        uow.session.execute(update(Chunk).where(Chunk.id == chunk_id)
                            .values(lease_expires_at=utcnow() + timedelta(seconds=300)))
        uow.heartbeats.beat(name, utcnow(), queues=["teacher"], pid=999999, concurrency=1, counters={})
        uow.commit()
    # Neither the lease, nor the next sweep, nor the heartbeat's broker check (which sweeps too) comes within the
    # wait below: only the start-up sweep, right after the worker's first heartbeat.
    env = {"REASONGEN_LEASE_SECONDS": "300", "REASONGEN_SWEEP_INTERVAL": "60", "REASONGEN_HEARTBEAT_INTERVAL": "30"}
    worker = start_worker(name=name, env=env)
    wait_for(lambda: scalar(queue_wired, select(WorkerHeartbeat.pid).where(WorkerHeartbeat.hostname == name))
             not in (None, 999999), 60, what="the restarted worker's first heartbeat")
    wait_for(lambda: finished(queue_wired, batch_id), 10, what="the batch to end after the start-up sweep")
    log = worker.log_path.read_text()
    # Written through the worker's logging (Celery's format), not a bare line before logging was set up.
    assert f"WARNING/MainProcess] sweeper: leases of workers that are gone ended: [('chunks', {chunk_id})]" in log
    assert f"WARNING/MainProcess] sweeper: {{'requeued': [{chunk_id}]" in log

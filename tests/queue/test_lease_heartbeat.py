"""A live chunk keeps its lease while it waits on a server slower than the lease; a chunk whose worker died
still loses its lease on time (issue 10, item 4). Real worker processes, Redis and PostgreSQL."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from storage.models import Chunk, WorkerHeartbeat
from tests.queue.conftest import kill_worker, wait_for
from tests.queue.test_workers import assert_one_draft_per_record, enqueue, finished, ready, scalar

pytestmark = pytest.mark.slow


def test_a_chunk_slower_than_its_lease_runs_once(queue_wired, start_worker):
    lease = queue_wired.settings.lease_s
    a = start_worker(concurrency=2)  # a free thread would take a chunk whose lease ran out
    ready(queue_wired, a)
    # One sub-batch per chunk that takes 2.5 leases: nothing commits (renews at a sub-batch) before it ends.
    batch_id = enqueue(queue_wired, 4, chunk_size=2, sub_batch_size=2, backend_options={"delay_s": lease * 2.5})
    batch = wait_for(lambda: finished(queue_wired, batch_id), 90, what="batch end")
    assert batch.status == "done", batch.reason
    with queue_wired.uow() as uow:
        assert [c.attempts for c in uow.chunks.for_batch(batch_id)] == [1, 1]  # never handed to a second run
    assert_one_draft_per_record(queue_wired, 4)


def test_a_dead_workers_lease_still_expires_on_time(queue_wired, start_worker):
    s = queue_wired.settings
    a = start_worker()
    ready(queue_wired, a)
    batch_id = enqueue(queue_wired, 2, chunk_size=2, sub_batch_size=2, backend_options={"delay_s": 60})
    wait_for(lambda: scalar(queue_wired, select(Chunk.id).where(Chunk.status == "leased")), 30, what="lease")
    time.sleep(s.lease_s)  # a few heartbeats have renewed it
    kill_worker(a)
    killed_at = time.monotonic()
    # The lease runs out at most one lease after the last heartbeat; the sweeper of a new worker re-queues it.
    b = start_worker()
    ready(queue_wired, b)
    wait_for(lambda: scalar(queue_wired, select(Chunk.attempts).where(Chunk.batch_id == batch_id,
                                                                     Chunk.status == "leased",
                                                                     Chunk.attempts == 2)), 30,
             every=0.1, what="second attempt")
    assert time.monotonic() - killed_at < s.lease_s + 10  # lease + worker start-up and sweep, not hours


def test_a_killed_workers_chunks_are_handed_on_without_waiting_for_the_lease(queue_wired, start_worker):
    # A 5-minute lease (the default's order): the sweeper must see the worker is gone (its heartbeat row went
    # stale) and end its leases at once, instead of waiting for them to run out.
    long_lease = {"REASONGEN_LEASE_SECONDS": "300"}
    a = start_worker(env=long_lease)
    ready(queue_wired, a)
    batch_id = enqueue(queue_wired, 4, chunk_size=2, sub_batch_size=1, backend_options={"delay_s": 0.5})
    wait_for(lambda: scalar(queue_wired, select(Chunk.id).where(Chunk.status == "leased", Chunk.n_done > 0)), 30,
             every=0.05, what="worker a mid-chunk")
    kill_worker(a)
    killed_at = time.monotonic()
    b = start_worker(env=long_lease)
    batch = wait_for(lambda: finished(queue_wired, batch_id), 60, what="batch end")
    assert batch.status == "done" and time.monotonic() - killed_at < 60  # not the 300 s lease
    assert_one_draft_per_record(queue_wired, 4)
    assert "leases of workers that are gone ended" in b.log_path.read_text()


def test_a_restarted_worker_hands_its_old_leases_on_at_start_up(queue_wired, start_worker):
    # A worker SIGKILLed and restarted under the same name (systemd, the chaos bench): its heartbeat row now
    # has another pid, so its old leases are dead. It sweeps at start-up, so they move on at once, not after
    # a sweep interval (a minute here) nor the 5-minute lease.
    from workers.batches import utcnow
    from workers.chunks import claim, new_owner

    name = "restarted@test"
    batch_id = enqueue(queue_wired, 2, chunk_size=2, sub_batch_size=2)  # its message is taken by nobody yet
    chunk_id = scalar(queue_wired, select(Chunk.id).where(Chunk.batch_id == batch_id))
    old = new_owner(name).replace(f":{__import__('os').getpid()}:", ":999999:")  # the killed process
    assert claim(queue_wired, chunk_id, old) is not None
    with queue_wired.uow() as uow:
        uow.heartbeats.beat(name, utcnow(), queues=["teacher"], pid=999999, concurrency=1, counters={})
        uow.commit()
    env = {"REASONGEN_LEASE_SECONDS": "300", "REASONGEN_SWEEP_INTERVAL": "60", "REASONGEN_HEARTBEAT_INTERVAL": "10"}
    w = start_worker(name=name, env=env)
    wait_for(lambda: scalar(queue_wired, select(WorkerHeartbeat.pid).where(WorkerHeartbeat.hostname == name))
             not in (None, 999999), 30, what="restarted worker's heartbeat")
    started = time.monotonic()
    batch = wait_for(lambda: finished(queue_wired, batch_id), 20, what="batch end soon after start-up")
    assert batch.status == "done" and time.monotonic() - started < 20
    assert_one_draft_per_record(queue_wired, 2)
    # The dead lease was ended and the chunk re-queued (a second attempt), long before the lease ran out.
    assert scalar(queue_wired, select(Chunk.attempts).where(Chunk.id == chunk_id)) == 2


def test_a_teacher_worker_loads_the_language_check_before_its_first_task():
    # Built lazily inside the first chunk, the detector (a second or more of CPU) starved the teacher's event
    # loop, and answers already received timed out and were paid again.
    from storage.ingest.langid import detector
    from workers import lifecycle

    detector.cache_clear()
    lifecycle.warm_up(["p-train"], prefix="p-")
    assert detector.cache_info().currsize == 0  # a train worker runs no language check
    lifecycle.warm_up(["p-teacher"], prefix="p-")
    assert detector.cache_info().currsize == 1
    started = time.monotonic()
    detector().detect_language_of("Another sentence in English, checked by the first chunk.")
    assert time.monotonic() - started < 0.5  # the models are loaded already

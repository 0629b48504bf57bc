"""Real `reasongen worker` processes on Redis and PostgreSQL: crashes, lost messages, cancel, poison, follow-up."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import redis
from sqlalchemy import func, select, update

from judging import gate
from storage.models import Batch, Chunk, Draft, WorkerHeartbeat
from tests.helpers import add_records
from tests.queue.conftest import kill_worker, wait_for
from workers import batches, dispatch
from workers.app import queue_name
from workers.planning import BatchRequest, plan_batch

pytestmark = pytest.mark.slow


def rows(n: int) -> list[dict]:
    return [{"instruction": f"Question {i}?", "key": f"k{i}"} for i in range(n)]


def enqueue(wired, n: int, **req) -> int:  # type: ignore[no-untyped-def]
    with wired.uow() as uow:
        if uow.records.ids(uow.records.get_or_create_dataset("ds").id) == []:
            add_records(uow, "ds", rows(n))
    planned = plan_batch(wired, BatchRequest(dataset="ds", backend="slow", **req))
    dispatch.send_chunks(wired.settings, planned.chunk_ids, planned.backend)
    return planned.batch_id


def scalar(wired, stmt):  # type: ignore[no-untyped-def]
    with wired.uow() as uow:
        return uow.session.scalar(stmt)


def finished(wired, batch_id: int) -> SimpleNamespace | None:  # type: ignore[no-untyped-def]
    with wired.uow() as uow:
        b = uow.session.get(Batch, batch_id)
        if b.finished_at is None:
            return None
        return SimpleNamespace(status=b.status, reason=b.status_reason, followup_enqueued_at=b.followup_enqueued_at)


def ready(wired, *procs) -> None:  # type: ignore[no-untyped-def]
    names = {p.hostname for p in procs}
    wait_for(lambda: names <= set(scalar_all(wired, select(WorkerHeartbeat.hostname))), 30, what="worker heartbeat")


def scalar_all(wired, stmt) -> list:  # type: ignore[no-untyped-def]
    with wired.uow() as uow:
        return list(uow.session.scalars(stmt))


def assert_one_draft_per_record(wired, n: int) -> None:  # type: ignore[no-untyped-def]
    per_record = scalar_all(wired, select(func.count()).select_from(Draft).group_by(Draft.record_id))
    assert (len(per_record), set(per_record)) == (n, {1})


def test_sigkilled_worker_mid_chunk_batch_still_ends_with_one_draft_per_record(queue_wired, start_worker):
    a, b = start_worker(), start_worker()
    ready(queue_wired, a, b)
    batch_id = enqueue(queue_wired, 24, chunk_size=6, sub_batch_size=2, backend_options={"delay_s": 0.3})
    # Wait until worker a has committed part of a chunk, then kill it (main process and children).
    def a_mid_chunk():  # type: ignore[no-untyped-def]
        return scalar(queue_wired, select(Chunk.id).where(Chunk.status == "leased", Chunk.n_done > 0,
                                                             Chunk.lease_owner.startswith(a.hostname)))
    wait_for(a_mid_chunk, 30, every=0.05, what="worker a mid-chunk")
    kill_worker(a)
    batch = wait_for(lambda: finished(queue_wired, batch_id), 60, what="batch end")
    assert batch.status == "done"
    assert_one_draft_per_record(queue_wired, 24)
    with queue_wired.uow() as uow:
        assert max(c.attempts for c in uow.chunks.for_batch(batch_id)) == 2  # the killed chunk ran again


def test_redis_flushed_mid_batch_the_sweeper_completes_it(queue_wired, start_worker, broker_url):
    batch_id = enqueue(queue_wired, 30, chunk_size=3, sub_batch_size=3, backend_options={"delay_s": 0.2})
    w = start_worker()
    wait_for(lambda: scalar(queue_wired, select(func.count()).select_from(Draft)), 30, every=0.05,
             what="first drafts")
    redis.Redis.from_url(broker_url).flushdb()  # our private db only: every queued message is gone
    batch = wait_for(lambda: finished(queue_wired, batch_id), 60, what="batch end")
    assert batch.status == "done"
    assert_one_draft_per_record(queue_wired, 30)
    assert w.poll() is None


def test_cancel_stops_running_and_queued_chunks(queue_wired, start_worker):
    w = start_worker()
    ready(queue_wired, w)
    batch_id = enqueue(queue_wired, 40, chunk_size=10, sub_batch_size=2, backend_options={"delay_s": 0.2})
    wait_for(lambda: scalar(queue_wired, select(func.count()).select_from(Draft)), 30, every=0.05,
             what="first drafts")
    batches.cancel(queue_wired, batch_id)
    cancelled_at = scalar(queue_wired, select(func.count()).select_from(Draft))
    batch = wait_for(lambda: finished(queue_wired, batch_id), 30, what="batch end")
    assert batch.status == "cancelled"
    with queue_wired.uow() as uow:
        assert uow.chunks.count(batch_id) == {"cancelled": 4}
    # The sub-batch in flight when we cancelled was dropped by the fence: nothing was written after.
    assert scalar(queue_wired, select(func.count()).select_from(Draft)) == cancelled_at


def test_poison_chunk_that_kills_its_worker_ends_failed_after_max_attempts(queue_wired, start_worker):
    batch_id = enqueue(queue_wired, 6, chunk_size=3, backend_options={"kill_keys": ["k4"]})
    pool = [start_worker(), start_worker()]  # threads pool: the poison takes the whole worker process down

    def ended_restarting_the_dead():  # type: ignore[no-untyped-def]
        for i, proc in enumerate(pool):
            if proc.poll() is not None:
                pool[i] = start_worker()
        return finished(queue_wired, batch_id)

    batch = wait_for(ended_restarting_the_dead, 60, every=0.2, what="batch end")
    assert batch.status == "failed" and "1 chunk(s) failed" in batch.reason
    with queue_wired.uow() as uow:
        poison = uow.chunks.for_batch(batch_id, ["failed"])
        assert [c.attempts for c in poison] == [queue_wired.settings.max_attempts]
        assert "lease expired" in poison[0].last_error
        assert uow.chunks.count(batch_id) == {"done": 1, "failed": 1}


def test_followup_is_sent_once_when_two_workers_race_to_finish(queue_wired, start_worker, broker_url):
    a, b = start_worker(concurrency=2), start_worker(concurrency=2)
    ready(queue_wired, a, b)
    batch_id = enqueue(queue_wired, 40, chunk_size=1, then="build")
    batch = wait_for(lambda: finished(queue_wired, batch_id), 60, what="batch end")
    # Nobody has decided the drafts yet, so the follow-up is held (once) rather than handed out.
    assert batch.status == "done" and batch.followup_enqueued_at is None
    assert scalar(queue_wired, select(Batch.followup_waiting_at).where(Batch.id == batch_id)) is not None
    with queue_wired.uow() as uow:  # people approve the batch's drafts; two sweeps find nothing pending
        uow.session.execute(update(Draft).where(Draft.batch_id == batch_id).values(status="approved"))
        uow.commit()
    fired = gate.release_ready(queue_wired) + gate.release_ready(queue_wired)
    assert fired in ([(batch_id, "build")], [])  # [] when a worker's own sweeper got there first
    # The follow-up reaches the broker through the outbox: wait for it to be recorded sent.
    wait_for(lambda: scalar(queue_wired, select(Batch.followup_sent_at).where(Batch.id == batch_id)), 30,
             what="follow-up sent")
    # No train worker runs, so the follow-up message waits on the train queue: exactly one.
    train_queue = queue_name(queue_wired.settings, "train")
    assert redis.Redis.from_url(broker_url).llen(train_queue) == 1


def test_teacher_chunks_reach_the_stub_and_the_key_stays_out_of_messages_and_database(
        queue_wired, start_worker, broker_url, monkeypatch):
    from reasongen.testing.openai_server import start_stub_server

    key = "sk-test-" + "s3cret" * 4
    base_url, stub = start_stub_server(api_key=key, script=["ratelimit", "ratelimit"])  # two 429s, then answers
    try:
        with queue_wired.uow() as uow:
            add_records(uow, "ds", rows(20))
        # The batch records the endpoint it is planned for (never the key); workers use that endpoint.
        monkeypatch.setattr(queue_wired.settings, "openai_base_url", base_url)
        monkeypatch.setattr(queue_wired.settings, "openai_api_key", __import__("pydantic").SecretStr(key))
        planned = plan_batch(queue_wired, BatchRequest(dataset="ds", backend="teacher", chunk_size=5))
        dispatch.send_chunks(queue_wired.settings, planned.chunk_ids, planned.backend)
        messages = redis.Redis.from_url(broker_url).lrange(queue_name(queue_wired.settings, "teacher"), 0, -1)
        assert len(messages) == 4 and not any(key.encode() in m for m in messages)
        worker = start_worker(concurrency=2, env={"OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": key})
        batch = wait_for(lambda: finished(queue_wired, planned.batch_id), 60, what="batch end")
        assert batch.status == "done"
        assert_one_draft_per_record(queue_wired, 20)
        assert stub.stats()["requests"] >= 20
        # The worker's heartbeat carries what its teacher did (what /metrics reports): requests and the 429s.
        counted = wait_for(lambda: _counters(queue_wired, worker.hostname).get("requests", 0) >= 22
                           and _counters(queue_wired, worker.hostname), 30, what="worker counters")
        assert counted["rate_limited"] == 2 and counted["retries"] >= 2
        with queue_wired.uow() as uow:
            dump = repr([tuple(r) for r in uow.session.execute(select(Draft.__table__))])
            dump += repr([tuple(r) for r in uow.session.execute(select(Batch.__table__))])
        assert key not in dump
        assert key not in worker.log_path.read_text()
    finally:
        stub.stop()


def _counters(wired, hostname: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with wired.uow() as uow:
        return dict(next((w.counters for w in uow.heartbeats.all() if w.hostname == hostname), None) or {})


def test_gpu_queue_runs_local_model_chunks_in_a_solo_worker(queue_wired, start_worker, tmp_path):
    from training.tiny import make_tiny_model

    model_dir = make_tiny_model(tmp_path / "tiny-phi")
    with queue_wired.uow() as uow:
        add_records(uow, "ds", rows(6))
    planned = plan_batch(queue_wired, BatchRequest(dataset="ds", backend="local", model=str(model_dir), chunk_size=3,
                                                   backend_options={"max_new_tokens": 8, "device": "cpu"}))
    assert planned.backend == "local"
    dispatch.send_chunks(queue_wired.settings, planned.chunk_ids, planned.backend)
    gpu = start_worker(queues="gpu")
    batch = wait_for(lambda: finished(queue_wired, planned.batch_id), 90, what="batch end")
    assert batch.status == "done"
    assert_one_draft_per_record(queue_wired, 6)
    with queue_wired.uow() as uow:
        beat = uow.session.get(WorkerHeartbeat, gpu.hostname)
        assert (beat.queues, beat.concurrency) == ([queue_name(queue_wired.settings, "gpu")], 1)
        assert {d.backend for d in uow.session.scalars(select(Draft))} == {"local"}

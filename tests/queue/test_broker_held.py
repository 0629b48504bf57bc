"""Which chunk messages the broker still holds: a reservation by a worker that died does not count."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import redis

from workers import broker, sweeper


def _reserve(client, chunk_id: int, at: float) -> str:  # type: ignore[no-untyped-def]
    tag = uuid.uuid4().hex
    message = {"headers": {"id": f"chunk-{chunk_id}-{uuid.uuid4().hex[:6]}"}, "body": ""}
    client.hset("unacked", tag, json.dumps([message, "", "teacher"]))
    client.zadd("unacked_index", {tag: at})
    return tag


def test_only_recent_reservations_count_as_held(queue_settings):
    client = redis.Redis.from_url(queue_settings.broker_url)
    old = _reserve(client, 9_000_001, time.time() - 600)  # its worker was SIGKILLed ten minutes ago
    new = _reserve(client, 9_000_002, time.time())
    try:
        held = broker.held_chunk_ids(queue_settings, reserved_within_s=60)
        assert 9_000_002 in held and 9_000_001 not in held
    finally:
        client.hdel("unacked", old, new)
        client.zrem("unacked_index", old, new)


def _queued_chunk(wired, queued_ago_s: float) -> int:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from sqlalchemy import update

    from storage.models import Chunk
    from tests.helpers import add_records
    from workers.batches import utcnow
    from workers.planning import BatchRequest, plan_batch

    with wired.uow() as uow:
        add_records(uow, "ds", [{"instruction": "Q1"}])
    chunk_id = plan_batch(wired, BatchRequest(dataset="ds", backend="slow")).chunk_ids[0]
    with wired.uow() as uow:
        uow.session.execute(update(Chunk).where(Chunk.id == chunk_id)
                            .values(enqueued_at=utcnow() - timedelta(seconds=queued_ago_s)))
        uow.commit()
    return chunk_id


@pytest.mark.parametrize("reserved_ago_s, resent", [(broker.RESERVATION_GRACE_S + 5, True), (5, False)])
def test_a_dead_workers_reservation_is_re_sent_without_waiting_for_requeue_after(
        queue_wired, monkeypatch, reserved_ago_s, resent):
    # Default REQUEUE_AFTER (2 minutes): a chunk reserved by a worker that was SIGKILLed (its retry message
    # after a database outage, say) used to wait that long, on top of the sweep. With Redis the sweeper sees
    # what the broker holds, and a reservation older than the grace is a dead worker's.
    monkeypatch.setattr(queue_wired.settings, "requeue_after_s", 120.0)
    chunk_id = _queued_chunk(queue_wired, queued_ago_s=reserved_ago_s + 1)
    client = redis.Redis.from_url(queue_wired.settings.broker_url)
    tag = _reserve(client, chunk_id, time.time() - reserved_ago_s)
    try:
        assert (chunk_id in sweeper.sweep(queue_wired, send=False).resent) is resent
    finally:
        client.hdel("unacked", tag)
        client.zrem("unacked_index", tag)


def test_a_gone_workers_reserved_message_is_re_sent_when_the_worker_is_found_gone(queue_wired, monkeypatch):
    # A chunk whose retry message (a countdown after a database outage) a worker had reserved, not yet run, when it
    # was SIGKILLed: kombu's reservations do not say whose they are, so the chunk waited for the grace (45 s more
    # in a chaos run). A sweep that finds a worker gone (its leases ended) re-sends it at once.
    from datetime import timedelta

    from sqlalchemy import update

    from storage.models import Chunk
    from workers.batches import utcnow

    from tests.helpers import add_records
    from workers.planning import BatchRequest, plan_batch

    monkeypatch.setattr(queue_wired.settings, "requeue_after_s", 120.0)
    client = redis.Redis.from_url(queue_wired.settings.broker_url)
    with queue_wired.uow() as uow:
        add_records(uow, "ds", [{"instruction": "Q1"}, {"instruction": "Q2"}])
    held, leased = plan_batch(queue_wired, BatchRequest(dataset="ds", backend="slow", chunk_size=1)).chunk_ids
    client.delete(f"{queue_wired.settings.queue_prefix}teacher")  # their messages: one reserved, one running
    tag = _reserve(client, held, time.time() - 1)  # reserved a second ago: held, by whoever it was
    try:
        assert held not in sweeper.sweep(queue_wired, send=False).resent  # no worker gone: the grace holds
        now = utcnow()
        with queue_wired.uow() as uow:
            uow.heartbeats.beat("gone@host", now, pid=111, queues=["teacher"], concurrency=1)
            uow.session.execute(update(Chunk).where(Chunk.id == leased).values(
                status="leased", lease_owner="gone@host:222:1:abcd", attempts=1,
                lease_expires_at=now + timedelta(seconds=300)))
            uow.commit()  # the worker restarted under its name (pid 111): the lease of pid 222 is a dead one's
        report = sweeper.sweep(queue_wired, send=False)
        assert report.requeued == [leased]  # its lease ended, and re-sent once (not also as a lost chunk)
        assert report.resent == [held]
    finally:
        client.hdel("unacked", tag)
        client.zrem("unacked_index", tag)

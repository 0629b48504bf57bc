"""Which chunk messages the broker still holds: a reservation by a worker that died does not count."""

from __future__ import annotations

import json
import time
import uuid

import redis

from workers import broker


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

"""Reading the broker directly (Redis): queue depths, and which chunk ids it still holds.

Only used to decide whether a chunk's message was lost; with another broker the sweeper falls back to
re-sending chunks queued for longer than ``requeue_after_s`` (a duplicate is harmless).
"""

from __future__ import annotations

import json
import time
from functools import lru_cache
from typing import Any

from reasongen.settings import Settings, is_redis_url
from workers.app import QUEUE_KINDS, queue_name
from workers.dispatch import chunk_id_of

PRIORITY_SEP = "\x06\x16"
PRIORITY_STEPS = (3, 6, 9)
# How long a worker's reservation of a still-queued chunk counts as held. A live worker claims a chunk the
# moment it runs it; it only holds one unclaimed for a countdown (a retry after a database outage waits at most
# 30 s, workers/tasks.py) or while its threads are busy. Older, the worker most likely died with it (SIGKILL,
# OOM), and kombu would restore the message only after the visibility timeout (hours). Re-sending one a live
# worker still holds costs a message: the lease lets one delivery in, the other is skipped.
RESERVATION_GRACE_S = 45.0


def is_redis(settings: Settings) -> bool:
    return is_redis_url(settings.broker_url)


def _client(settings: Settings) -> Any:
    return _client_for(settings.broker_url or "")


@lru_cache(maxsize=8)
def _client_for(url: str) -> Any:
    # One client (and its connection pool) per broker: a worker asks every second whether the broker lost its
    # data (workers/lifecycle.py), and a new client each time is a new connection each time.
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)


def unreachable(exc: BaseException) -> bool:
    """Redis did not answer (restarting, down): a connection error or a timeout, not a bug."""
    import redis

    return isinstance(exc, redis.ConnectionError | redis.TimeoutError)


def _keys(name: str) -> list[str]:
    return [name, *(f"{name}{PRIORITY_SEP}{p}" for p in PRIORITY_STEPS)]


def queue_depths(settings: Settings) -> dict[str, int] | None:
    if not is_redis(settings):
        return None
    client = _client(settings)
    return {kind: sum(client.llen(k) for k in _keys(queue_name(settings, kind))) for kind in QUEUE_KINDS}


def held_chunk_ids(settings: Settings, reserved_within_s: float) -> set[int] | None:
    """Chunk ids in the queues, or reserved by a worker within the last ``reserved_within_s`` seconds
    (kombu's 'unacked' hash and its delivery-time index); None if unknowable.

    An older reservation of a still-queued chunk belongs to a worker that died before claiming it (a live
    worker claims the lease at once): kombu would only restore it after the visibility timeout (hours),
    so it does not count as held and the sweeper re-sends the chunk.
    """
    if not is_redis(settings):
        return None
    client = _client(settings)
    raw: list[bytes] = []
    for kind in ("teacher", "gpu"):
        for key in _keys(queue_name(settings, kind)):
            raw.extend(client.lrange(key, 0, -1))
    held = {_task_chunk(json.loads(m)) for m in raw}
    fresh = client.zrangebyscore("unacked_index", time.time() - reserved_within_s, "+inf")
    for value in client.hmget("unacked", fresh) if fresh else []:
        if value is not None:
            held.add(_task_chunk(json.loads(value)[0]))
    held.discard(None)
    return held  # type: ignore[return-value]


def data_lost(settings: Settings) -> bool:
    """True once after the broker lost its data (Redis restarted empty, or flushed): a marker key written
    here is gone. Then every queued chunk it does not hold is re-sent at once, however recent, instead of
    after ``requeue_after_s``. (True on the very first call too: harmless, held chunks are not re-sent.)"""
    if not is_redis(settings):
        return False
    return bool(_client(settings).set(f"{settings.queue_prefix}reasongen:broker-epoch", "1", nx=True))


def _task_chunk(message: Any) -> int | None:
    try:
        return chunk_id_of(str(message["headers"]["id"]))
    except (KeyError, TypeError):
        return None

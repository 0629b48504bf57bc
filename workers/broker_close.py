"""A worker survives its broker restarting: kombu's Redis channel must not fail while closing a lost connection.

When Redis goes away, Celery closes the lost connection (``on_connection_error_after_connected``) and kombu's
channel close restores the unacknowledged messages (``QoS.restore_unacked``). If the channel's connection pool
was already dropped and its transport has let go of its client, building a new pool reads the client's host
and raises ``AttributeError: 'NoneType' object has no attribute 'hostname'``; that is not a connection error,
so Celery stops the worker ("Unrecoverable error"; bench/chaos: 2 workers in about 12 runs, the rest of the
batch on two workers). Same signature as celery/kombu#582 and #970; kombu 5.x still builds the pool there.

With no connection there is nothing to restore to, and nothing is lost: chunks live in PostgreSQL, and the
sweeper re-sends the queued ones (at once when Redis came back empty, workers/broker.py), while a running chunk
keeps its lease and finishes. So the restore is skipped, with a warning.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def tolerate_lost_connection_on_close() -> None:
    """Patch kombu's Redis ``QoS.restore_unacked`` (once per process) to skip a restore with no connection left."""
    from kombu.transport import redis as kombu_redis

    original = kombu_redis.QoS.restore_unacked
    if getattr(original, "reasongen_tolerant", False):
        return

    def restore_unacked(self: Any, client: Any = None) -> Any:
        channel = self.channel
        if client is None and channel._pool is None and getattr(channel.connection, "client", None) is None:
            log.warning("broker connection already closed: %d unacknowledged message(s) not restored; the "
                        "sweeper re-sends their chunks", len(self._delivered))
            self._delivered.clear()
            return None
        return original(self, client)

    restore_unacked.reasongen_tolerant = True  # type: ignore[attr-defined]
    kombu_redis.QoS.restore_unacked = restore_unacked

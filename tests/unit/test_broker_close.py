"""A worker's channel closing after Redis went away does not raise (Celery would stop the worker)."""

from __future__ import annotations

import os

import pytest
from kombu import Connection

from workers.broker_close import tolerate_lost_connection_on_close


def closing_a_channel_whose_connection_is_gone() -> None:
    url = os.environ.get("REASONGEN_TEST_REDIS", "redis://127.0.0.1:6379/5")
    with Connection(url) as conn:
        channel = conn.default_channel
        channel.qos._delivered["tag-1"] = None  # an unacknowledged message (a task still running)
        # As Celery finds it closing the connection Redis dropped: no pool, and a transport without its client.
        channel._pool = None
        channel.connection.client = None
        channel.close()


def test_kombu_alone_raises_the_error_that_stopped_a_worker() -> None:
    """The failure this guards against, as bench/chaos saw it (if kombu fixes it, this test says so)."""
    from kombu.transport import redis as kombu_redis

    if getattr(kombu_redis.QoS.restore_unacked, "reasongen_tolerant", False):
        pytest.skip("patched earlier in this process")
    with pytest.raises(AttributeError, match="hostname"):
        closing_a_channel_whose_connection_is_gone()


def test_the_worker_setup_closes_it_quietly(caplog: pytest.LogCaptureFixture) -> None:
    tolerate_lost_connection_on_close()
    tolerate_lost_connection_on_close()  # idempotent: one wrapper, not two
    closing_a_channel_whose_connection_is_gone()
    assert "not restored" in caplog.text

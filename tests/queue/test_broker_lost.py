"""Redis restarted empty: the sweeper notices the broker lost its data (a marker key is gone) and re-sends
every queued chunk it no longer holds at once, not after REASONGEN_REQUEUE_AFTER (2 minutes by default)."""

from __future__ import annotations

import time

import pytest
import redis
from sqlalchemy import func, select

from storage.models import Draft
from tests.queue.conftest import wait_for
from tests.queue.test_workers import assert_one_draft_per_record, enqueue, finished, scalar

pytestmark = pytest.mark.slow


def test_an_emptied_broker_is_noticed_without_waiting_for_requeue_after(queue_wired, start_worker, broker_url):
    batch_id = enqueue(queue_wired, 30, chunk_size=3, sub_batch_size=3, backend_options={"delay_s": 0.2})
    w = start_worker(env={"REASONGEN_REQUEUE_AFTER": "600"})  # the sweeper's age rule would wait 10 minutes
    wait_for(lambda: scalar(queue_wired, select(func.count()).select_from(Draft)), 30, every=0.05,
             what="first drafts")
    redis.Redis.from_url(broker_url).flushdb()  # our private db only: every queued message is gone
    batch = wait_for(lambda: finished(queue_wired, batch_id), 60, what="batch end")
    assert batch.status == "done"
    assert_one_draft_per_record(queue_wired, 30)
    assert w.poll() is None


def test_an_emptied_broker_is_noticed_within_a_heartbeat_not_a_sweep(queue_wired, start_worker, broker_url):
    # Sweeps a minute apart: the worker's heartbeat (every half second here) notices the broker lost its data
    # and asks for a sweep at once. Before, the queued chunks waited for the next sweep (30 s by default).
    batch_id = enqueue(queue_wired, 30, chunk_size=3, sub_batch_size=3, backend_options={"delay_s": 0.2})
    w = start_worker(env={"REASONGEN_REQUEUE_AFTER": "600", "REASONGEN_SWEEP_INTERVAL": "60"})
    wait_for(lambda: scalar(queue_wired, select(func.count()).select_from(Draft)), 30, every=0.05,
             what="first drafts")
    redis.Redis.from_url(broker_url).flushdb()
    batch = wait_for(lambda: finished(queue_wired, batch_id), 25, what="batch end within a heartbeat or so")
    assert batch.status == "done"
    assert_one_draft_per_record(queue_wired, 30)
    assert "the broker lost its data" in w.log_path.read_text()


def test_an_emptied_broker_is_noticed_within_seconds_whatever_the_heartbeat(queue_wired, start_worker, broker_url):
    # Heartbeats 30 s apart: the broker is looked at every second on a thread of its own. Before, only with the
    # heartbeat (every 10 s by default), and the workers ran dry meanwhile (bench/chaos: ~5 s nearly idle).
    batch_id = enqueue(queue_wired, 30, chunk_size=3, sub_batch_size=3, backend_options={"delay_s": 0.2})
    w = start_worker(env={"REASONGEN_REQUEUE_AFTER": "600", "REASONGEN_SWEEP_INTERVAL": "60",
                          "REASONGEN_HEARTBEAT_INTERVAL": "30"})
    wait_for(lambda: scalar(queue_wired, select(func.count()).select_from(Draft)), 30, every=0.05,
             what="first drafts")
    time.sleep(1.5)  # its first look (at start-up the marker is new: it counts as lost once, harmlessly) is in
    before = w.log_path.read_text().count("the broker lost its data")
    redis.Redis.from_url(broker_url).flushdb()
    flushed = time.monotonic()
    wait_for(lambda: w.log_path.read_text().count("the broker lost its data") > before, 20, every=0.05,
             what="the loss noticed")
    assert time.monotonic() - flushed < 6  # a second's look (and a loaded machine), not the next heartbeat
    batch = wait_for(lambda: finished(queue_wired, batch_id), 30, what="batch end")
    assert batch.status == "done"
    assert_one_draft_per_record(queue_wired, 30)

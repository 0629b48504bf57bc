"""A follow-up decided in the database but never sent (the process died in between) is sent by the sweeper."""

from __future__ import annotations

import time

import redis
from sqlalchemy import select

from storage.models import Batch
from tests.helpers import add_records
from workers import dispatch, sweeper
from workers.app import queue_name
from workers.chunks import claim, close, new_owner
from workers.planning import BatchRequest, plan_batch


def _finish_without_sending(wired) -> int:  # type: ignore[no-untyped-def]
    with wired.uow() as uow:
        add_records(uow, "ds", [{"instruction": "Q"}])
    planned = plan_batch(wired, BatchRequest(dataset="ds", then="build"))
    outcome = close(wired, claim(wired, planned.chunk_ids[0], new_owner()), None, "done")
    assert outcome.followup == (planned.batch_id, "build")  # ...and the worker is SIGKILLed right here
    return planned.batch_id


def _train_queue_depth(settings) -> int:  # type: ignore[no-untyped-def]
    return redis.Redis.from_url(settings.broker_url).llen(queue_name(settings, "train"))


def test_unsent_followup_is_sent_once_by_the_sweeper(queue_wired):
    batch_id = _finish_without_sending(queue_wired)
    assert sweeper.sweep(queue_wired).followups == []  # too recent: its own worker may still send it
    time.sleep(queue_wired.settings.requeue_after_s + 0.2)
    assert sweeper.sweep(queue_wired).followups == [(batch_id, "build")]
    assert sweeper.sweep(queue_wired).followups == []  # sent and recorded: never again
    assert _train_queue_depth(queue_wired.settings) == 1
    with queue_wired.uow() as uow:
        assert uow.session.scalar(select(Batch.followup_sent_at).where(Batch.id == batch_id)) is not None


def test_a_followup_handed_out_normally_is_not_sent_again(queue_wired):
    batch_id = _finish_without_sending(queue_wired)
    dispatch.hand_out_followup(queue_wired, batch_id, "build")
    time.sleep(queue_wired.settings.requeue_after_s + 0.2)
    assert sweeper.sweep(queue_wired).followups == []
    assert _train_queue_depth(queue_wired.settings) == 1

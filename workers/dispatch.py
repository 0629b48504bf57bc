"""Sending work to the broker: chunk ids, follow-ups, training runs. Messages carry ids only."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import logging

from celery import Celery

from reasongen.settings import Settings
from workers.app import CHUNK_TASK, FOLLOWUP_TASK, TRAIN_TASK, create_app, queue_for_backend, queue_name

log = logging.getLogger(__name__)
_apps: dict[tuple[str | None, str], Celery] = {}


def app_for(settings: Settings) -> Celery:
    key = (settings.broker_url, settings.queue_prefix)
    if key not in _apps:
        _apps[key] = create_app(settings)
    return _apps[key]


def use_app(settings: Settings, app: Celery) -> None:
    """A worker sends with its own app (and its connection pool)."""
    _apps[(settings.broker_url, settings.queue_prefix)] = app


def chunk_task_id(chunk_id: int) -> str:
    # The chunk id in the task id lets the sweeper see which chunks the broker still holds.
    return f"chunk-{chunk_id}-{uuid.uuid4().hex[:12]}"


def chunk_id_of(task_id: str) -> int | None:
    parts = task_id.split("-")
    return int(parts[1]) if len(parts) == 3 and parts[0] == "chunk" and parts[1].isdigit() else None


def send_chunks(settings: Settings, chunk_ids: Iterable[int], backend: str, countdown: float | None = None) -> int:
    app, queue, n = app_for(settings), queue_for_backend(settings, backend), 0
    with app.producer_or_acquire() as producer:
        for chunk_id in chunk_ids:
            app.send_task(CHUNK_TASK, args=[chunk_id], queue=queue, task_id=chunk_task_id(chunk_id),
                          producer=producer, countdown=countdown, ignore_result=True)
            n += 1
    return n


def send_followup(settings: Settings, batch_id: int, then: str) -> None:
    app_for(settings).send_task(FOLLOWUP_TASK, args=[batch_id, then], queue=queue_name(settings, "train"),
                                ignore_result=True)


def send_train(settings: Settings, run_id: int) -> None:
    """Queue a training run for a train worker (the training stage calls this)."""
    app_for(settings).send_task(TRAIN_TASK, args=[run_id], queue=queue_name(settings, "train"), ignore_result=True)


def hand_out_followup(wiring: Any, batch_id: int, then: str) -> None:
    """Send, then record it sent. A crash in between leaves it unsent, and the sweeper sends it again:
    at least once on the wire, and the follow-up itself finds an existing build or run (idempotent)."""
    from workers.batches import utcnow

    send_followup(wiring.settings, batch_id, then)
    with wiring.uow() as uow:
        uow.followups.mark_sent(batch_id, utcnow())
        uow.commit()


def deliver(wiring: Any, outcome: Any) -> None:
    """After a chunk: hand out the follow-up this chunk won, and re-send a chunk that will be retried."""
    if outcome.followup:
        hand_out_followup(wiring, *outcome.followup)
    if outcome.resend:
        with wiring.uow() as uow:
            backend = uow.chunks.backend_of(outcome.chunk_id) or "fake"
        send_chunks(wiring.settings, [outcome.chunk_id], backend, countdown=1.0)


def followup_blocker(uow: Any, batch_id: int) -> str | None:
    """Why a batch's follow-up may not build now, or None. The one place that decides it at run time.

    A build when none of this batch's records has an approved current draft would silently ship older
    approvals only: refuse it, saying what to do (the quality gate, judging/gate.py, holds a judged batch's
    follow-up before it is ever sent). A batch without chunks (made by hand) is not checked."""
    batch = uow.batches.get(batch_id)
    ids = uow.chunks.record_ids(batch_id)
    current = uow.batch_stats.current_drafts(ids, batch.template_name, batch.model) if ids else {}
    if not ids or any(d.status == "approved" for d in current.values()):
        return None
    return (f"nothing to build: none of batch {batch_id}'s drafts is approved (review them, e.g. "
            f"`reasongen review approve`, then run: reasongen retry-followup {batch_id})")


def run_followup_here(wiring: Any, batch_id: int, then: str, owner: str | None = None) -> None:
    """The follow-up in this process; a delivery that finds it taken or done does nothing."""
    from training.pipeline import FollowupTaken, run_followup

    try:
        run_followup(wiring, batch_id, then, owner=owner)
    except FollowupTaken as exc:
        log.warning("%s", exc)

"""The quality gate in front of a batch's follow-up (``--then build|train``).

A batch with a follow-up hands it out only when none of its drafts are left pending (a policy decided them
all, or people did), or when a person runs ``reasongen release BATCH``. Until then
``status`` shows "waiting for review: N". Each path sets ``followup_enqueued_at`` under the batch row lock, so
the follow-up is handed out exactly once, whichever path gets there first; it never fires from older
approvals while this batch's drafts are undecided.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from storage.models import Batch
from storage.uow import UnitOfWork

FollowUp = tuple[int, str]


def gated(batch: Batch) -> bool:
    """Every follow-up waits for its batch's drafts to be decided: by a policy, by people, or both.

    Without a judge or policy people are the gate, so a plain ``--then build`` waits for review (or
    ``release``) instead of failing on drafts that nobody could have approved yet."""
    return bool(batch.then)


def waiting_for_review(uow: UnitOfWork, batch: Batch) -> int:
    """This batch's drafts still pending (its records' current drafts for its template and model)."""
    if batch.kind == "judge":
        return 0
    return uow.judgements.pending_of_batch(uow.chunks.record_ids(batch.id), batch.template_name, batch.model)


def may_fire(uow: UnitOfWork, batch: Batch, now: datetime) -> bool:
    """Called by finalize with the batch row locked: False holds the follow-up (and marks the batch waiting)."""
    if not gated(batch) or waiting_for_review(uow, batch) == 0:
        return True
    if batch.followup_waiting_at is None:
        batch.followup_waiting_at = now
    return False


def take(uow: UnitOfWork, batch_id: int, now: datetime, *, force: bool) -> FollowUp | None:
    """Hand out a held follow-up once: when nothing is pending any more, or ``force`` (release)."""
    batch = uow.batches.lock(batch_id)
    if not batch.then:
        raise ValueError(f"batch {batch_id} has no follow-up (--then build|train) to release")
    if batch.followup_enqueued_at is not None:
        return None
    if batch.finished_at is None or batch.status != "done":
        raise ValueError(f"batch {batch_id} is {batch.status}; its follow-up waits until it is done")
    if not force and waiting_for_review(uow, batch):
        return None
    batch.followup_enqueued_at = now
    return (batch.id, batch.then)


def waiting_batches(uow: UnitOfWork) -> list[int]:
    stmt = select(Batch.id).where(Batch.followup_waiting_at.is_not(None), Batch.followup_enqueued_at.is_(None))
    return list(uow.session.scalars(stmt))


def release(wiring: Any, batch_id: int, *, force: bool = True) -> FollowUp | None:
    """Take the follow-up (committed) and fire it: on the broker, or here without one."""
    from workers.batches import utcnow

    with wiring.uow() as uow:
        followup = take(uow, batch_id, utcnow(), force=force)
        uow.commit()
    if followup:
        fire(wiring, followup)
    return followup


def release_ready(wiring: Any) -> list[FollowUp]:
    """Fire every held follow-up whose batch has nothing pending any more (after reviews, from the sweeper)."""
    with wiring.uow() as uow:
        ids = waiting_batches(uow)
    fired = []
    for batch_id in ids:
        found = release(wiring, batch_id, force=False)
        if found:
            fired.append(found)
    return fired


def fire(wiring: Any, followup: FollowUp) -> None:
    if wiring.settings.broker_url:
        from workers.dispatch import hand_out_followup

        hand_out_followup(wiring, *followup)
    else:
        from workers.inprocess import _followup

        _followup(wiring, *followup)


def summary(uow: UnitOfWork, batch: Batch) -> dict[str, Any]:
    """What `status` adds for the gate: judge spend, and the drafts a held follow-up waits for."""
    tokens, cost = uow.judgements.spend(batch.id)
    held = batch.followup_waiting_at is not None and batch.followup_enqueued_at is None
    extra: dict[str, Any] = {"waiting_for_review": waiting_for_review(uow, batch) if held else 0,
                             "judge_tokens": tokens, "judge_cost_usd": round(cost, 6)}
    if batch.kind == "judge":
        extra["cost_usd"], extra["tokens"] = round(cost, 6), tokens
    return extra

"""Celery tasks: ids in, a plain function, ids out. All the logic lives in chunks.py and friends.

A database outage (PostgreSQL restarting) is not the work's fault: the task is retried with backoff instead of
being acked and dropped, so a short outage delays work and loses no message. A chunk retried this way takes
its own lease back (same owner), so the attempt is neither counted twice nor left to the sweeper.
"""

from __future__ import annotations

import logging
import random

from celery import shared_task

from workers import dispatch, runtime
from workers.app import CHUNK_TASK, FOLLOWUP_TASK, TRAIN_TASK
from workers.chunks import is_db_outage, new_owner, process_chunk

log = logging.getLogger(__name__)
# About 15 minutes of retries (1, 2, 4 ... 30 s, jittered) before a message is given up to the sweeper.
DB_RETRIES = 40
DB_BACKOFF_MAX_S = 30.0


def outage_backoff(retries: int) -> float:
    return min(DB_BACKOFF_MAX_S, 2.0 ** retries) * random.uniform(0.5, 1.0)


def _retry_on_outage(task, exc: BaseException, **kwargs: object):  # type: ignore[no-untyped-def]
    if not is_db_outage(exc):
        raise exc
    return task.retry(exc=exc, countdown=outage_backoff(task.request.retries), max_retries=DB_RETRIES,
                      kwargs=kwargs or None)


@shared_task(name=CHUNK_TASK, bind=True)
def run_chunk(self, chunk_id: int, owner: str | None = None,  # type: ignore[no-untyped-def]
              previous: list[str] | None = None) -> str:
    """``previous`` (``owner`` in older messages): the lease owners of this message's earlier deliveries."""
    rt = runtime.current()
    previous = [*(previous or []), *([owner] if owner else [])]
    mine = new_owner(self.request.hostname)  # the lease names the worker that runs it now
    try:
        wiring = rt.wiring()
        outcome = process_chunk(wiring, chunk_id, rt.backends, worker=self.request.hostname, owner=mine,
                                previous=previous)
        dispatch.deliver(wiring, outcome)
    except Exception as exc:  # noqa: BLE001 - only database outages are retried; the rest re-raises
        raise _retry_on_outage(self, exc, previous=[*previous, mine][-3:]) from exc
    return outcome.state


@shared_task(name=FOLLOWUP_TASK, bind=True)
def followup(self, batch_id: int, then: str) -> None:  # type: ignore[no-untyped-def]
    owner = new_owner(self.request.hostname)  # names this worker: the sweeper can tell when it is gone
    try:
        dispatch.run_followup_here(runtime.current().wiring(), batch_id, then, owner=owner)
    except Exception as exc:  # noqa: BLE001
        raise _retry_on_outage(self, exc) from exc


@shared_task(name=TRAIN_TASK, bind=True)
def train_run(self, run_id: int) -> None:  # type: ignore[no-untyped-def]
    from training.train import RunTaken, execute_run  # here, so teacher workers never import torch

    rt = runtime.current()
    try:
        execute_run(rt.wiring().uow, run_id, lease_s=rt.settings.lease_s, owner=new_owner(self.request.hostname))
    except RunTaken as exc:  # a duplicate delivery while another worker trains it: nothing to do
        log.warning("%s", exc)
    except Exception as exc:  # noqa: BLE001
        raise _retry_on_outage(self, exc) from exc

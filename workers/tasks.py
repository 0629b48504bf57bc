"""Celery tasks: ids in, a plain function, ids out. All the logic lives in chunks.py and friends."""

from __future__ import annotations

from celery import shared_task

from workers import dispatch, runtime
from workers.app import CHUNK_TASK, FOLLOWUP_TASK, TRAIN_TASK
from workers.chunks import process_chunk


@shared_task(name=CHUNK_TASK, bind=True)
def run_chunk(self, chunk_id: int) -> str:  # type: ignore[no-untyped-def]
    rt = runtime.current()
    wiring = rt.wiring()
    outcome = process_chunk(wiring, chunk_id, rt.backends, worker=self.request.hostname)
    dispatch.deliver(wiring, outcome)
    return outcome.state


@shared_task(name=FOLLOWUP_TASK)
def followup(batch_id: int, then: str) -> None:
    dispatch.run_followup_here(runtime.current().wiring(), batch_id, then)


@shared_task(name=TRAIN_TASK)
def train_run(run_id: int) -> None:
    from training.train import execute_run  # here, so teacher workers never import torch

    execute_run(runtime.current().wiring().uow, run_id)

"""`resume` of a batch run in provider batch mode: what was never answered goes out as a new provider job.

A batch-mode batch stays in batch mode: `resume` after `cancel` (or a stop) sends the requests the cancel kept
from running (state ``cancelled``) in a new job, lets jobs that never reached the provider go on, and
leaves jobs still running at the provider alone: their requests are still ``sent`` and are never sent
twice (what such a job leaves unanswered is retried when it closes, since the batch runs again). Failed
results are `retry-failed`'s, as online.
"""

from __future__ import annotations

from typing import Any

from reasongen.bootstrap import Wiring
from workers.batches import utcnow
from workers.provider_ingest import TERMINAL, add_to_collector, finish_if_complete

OPEN = ("collecting", "new", "uploaded", "submitted")


def in_batch_mode(wiring: Wiring, batch_id: int) -> bool:
    """Whether the batch was sent as provider batch jobs (generate/rebuild/judge --mode batch)."""
    with wiring.uow() as uow:
        batch = uow.batches.get(batch_id)
        return batch.params.get("mode") == "batch" or bool(uow.provider_jobs.for_batch(batch_id))


def resume(wiring: Wiring, batch_id: int, client: Any = None) -> int:
    """Send again what the reopened batch never got an answer for; returns how many requests that is."""
    from workers import provider_jobs

    with wiring.uow() as uow:
        uow.batches.lock(batch_id)
        jobs = list(uow.provider_jobs.for_batch(batch_id))
        for job in jobs:  # a cancel not yet at the provider is withdrawn: the job runs after all
            if job.state in OPEN and job.status not in ("cancelling", *TERMINAL):
                job.cancel_requested = False
        again = list(uow.provider_jobs.in_state(batch_id, ["cancelled"]))
        last = max((j.attempt for j in jobs), default=0)
        for req in again:  # never ran: its attempt is not used up
            req.state = "resent"
            add_to_collector(uow, batch_id, req, req.body, req.kind, req.attempt, last + 1, jobs[0].model,
                             jobs[0].endpoint)
        collector = uow.provider_jobs.collector(batch_id)
        if collector is not None:
            collector.state = "new"
        if jobs:
            uow.session.flush()
            finish_if_complete(uow, batch_id, utcnow())  # nothing left to send: done again
        uow.commit()
    if not jobs:  # cancelled before its jobs were written: write and send them now
        provider_jobs.start(wiring, batch_id, client)
    else:
        provider_jobs.poll(wiring, client, batch_id=batch_id)
    return len(again)


def cancel_batch(wiring: Wiring, batch_id: int) -> str:
    """Cancel a batch and, run in batch mode, its provider jobs too (answers already in are kept): the one cancel
    the CLI and the web app share, so neither leaves jobs running (and costing) at the provider."""
    from workers import batches, provider_jobs

    message = batches.cancel(wiring, batch_id)
    jobs = provider_jobs.cancel(wiring, batch_id)
    if jobs:
        message += f"; {jobs} provider batch job(s) cancelled (requests already answered are kept)"
    return message

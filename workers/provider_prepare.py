"""Turning a planned batch into provider jobs: every request line and its item written before any upload.

One transaction: the jobs (state ``new``), each request's ``custom_id`` -> item, cache key and exact body,
and the batch's chunks set aside (status ``provider``: no worker takes them). What the items are and what is
sent for each is the batch's stage (drafts: records; judge: drafts; generation/provider_batch/stage.py).
Items already done under the same cache key are skipped; items identical to one already requested follow it
(``follower``) and get a copy of its result, as in online mode.
"""

from __future__ import annotations

from typing import Any

from generation.provider_batch.requests import Limits, split
from generation.provider_batch.stage import stage_for
from reasongen.bootstrap import Wiring
from storage.models import Chunk
from workers.batches import utcnow
from workers.provider_ingest import count_progress, finish_if_complete


def limits_of(settings: Any) -> Limits:
    return Limits(settings.batch_max_requests, settings.batch_max_bytes)


def prepare(wiring: Wiring, batch_id: int) -> list[int]:
    """Write the batch's provider jobs and requests; returns the new job ids (none if already prepared)."""
    settings = wiring.settings
    with wiring.uow() as uow:
        batch = uow.batches.lock(batch_id)
        if uow.provider_jobs.for_batch(batch_id):
            return []
        found = stage_for(batch).prepare(uow, batch, settings)
        batch.params = {**batch.params, **found.params, "mode": "batch"}
        now, job_ids = utcnow(), []
        for part in split(found.lines, limits_of(settings)):
            job = uow.provider_jobs.add_job(batch_id=batch_id, attempt=1, state="new", model=batch.model,
                                            endpoint=settings.openai_base_url, requests=len(part),
                                            bytes=sum(len(data) for _, data in part), completed=0, failed=0,
                                            polls=0, cancel_requested=False)
            uow.provider_jobs.add_requests([{**row, "job_id": job.id, "state": "sent", "created_at": now}
                                            for row, _ in part])
            job_ids.append(job.id)
        if found.followers:  # a follower's leader is always in a job (a done key skips all its items)
            uow.provider_jobs.add_requests([{**row, "job_id": job_ids[0], "state": "follower", "created_at": now}
                                            for row in found.followers])
        uow.session.query(Chunk).filter(Chunk.batch_id == batch_id, Chunk.status == "queued").update(
            {"status": "provider"}, synchronize_session=False)
        count_progress(uow, batch_id, found.done)  # already done under the same key
        if not job_ids:  # every item already done: nothing to send, the batch is done
            finish_if_complete(uow, batch_id, now)
        uow.commit()
        return job_ids

"""Provider batch jobs, driven from the database: upload, create, poll with backoff, ingest, cancel.

Every step reads a job's state from PostgreSQL, does one provider call, and writes what it learned before
the next: ``new`` (requests stored) -> ``uploaded`` (input file id stored) -> ``submitted`` (provider job id
stored) -> ``done`` (output and error files ingested). A step cut short is finished by whichever poller comes
next: an upload is found again by its file name and a job by its ``metadata.reasongen_job``, so a crash
between the provider's answer and our commit never sends a job twice. Polling (``poll``) runs in the
sweeper of every worker and in ``generate --mode batch --wait``; a job row is locked while polled.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from reasongen.bootstrap import Wiring
from workers.batches import utcnow
from workers.provider_ingest import TERMINAL, close_job, ingest_file

log = logging.getLogger(__name__)
ENDPOINT = "/v1/chat/completions"


def client_for(settings: Any) -> Any:
    import openai

    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "not-needed"
    return openai.OpenAI(base_url=settings.openai_base_url, api_key=key, max_retries=2, timeout=120)


def start(wiring: Wiring, batch_id: int, client: Any = None) -> list[int]:
    """Prepare the batch's jobs (stored first), then upload and create them."""
    from workers.provider_prepare import prepare

    job_ids = prepare(wiring, batch_id)
    poll(wiring, client, batch_id=batch_id)
    return job_ids


def poll(wiring: Wiring, client: Any = None, *, batch_id: int | None = None) -> int:
    """One pass over jobs with a step due; returns how many were handled. Safe to run from many processes."""
    with wiring.uow() as uow:
        due = uow.provider_jobs.due(utcnow(), batch_id)
    if not due:
        return 0
    client = client or client_for(wiring.settings)
    handled = 0
    for job_id in due:
        try:
            handled += step(wiring, client, job_id)
        except Exception as exc:  # noqa: BLE001 - the provider or the database blinked: next pass tries again
            log.warning("provider job %s: %s (will retry)", job_id, exc)
            _later(wiring, job_id, f"{type(exc).__name__}: {str(exc)[:300]}")
    return handled


def step(wiring: Wiring, client: Any, job_id: int) -> int:
    """Take a job as far as it goes now, committing after every provider call."""
    for _ in range(3):  # new -> uploaded -> submitted, or one poll
        with wiring.uow() as uow:
            job = uow.provider_jobs.lock(job_id)
            if job is None:
                return 0
            state = job.state
            if state in ("new", "uploaded") and job.cancel_requested:
                close_job(uow, wiring.settings, job, "cancelled", utcnow())
            elif state == "new":
                _upload(uow, client, job)
            elif state == "uploaded":
                _create(uow, client, job, wiring.settings)
            elif state == "submitted":
                _poll(wiring, uow, client, job)
            uow.commit()
        if state not in ("new", "uploaded"):
            break
    return 1


def _upload(uow: Any, client: Any, job: Any) -> None:
    from generation.provider_batch.requests import line

    name = f"reasongen-job-{job.id}.jsonl"
    found = next((f for f in client.files.list(purpose="batch") if f.filename == name), None)
    if found is None:
        data = b"".join(line(r.custom_id, r.body) for r in uow.provider_jobs.requests_of(job.id, ["sent"]))
        found = client.files.create(file=(name, data), purpose="batch")
    job.input_file_id, job.state, job.error = found.id, "uploaded", None


def _create(uow: Any, client: Any, job: Any, settings: Any) -> None:
    found = next((b for b in client.batches.list(limit=100)
                  if (b.metadata or {}).get("reasongen_job") == str(job.id)), None)
    if found is None:
        found = client.batches.create(input_file_id=job.input_file_id, endpoint=ENDPOINT, completion_window="24h",
                                      metadata={"reasongen_job": str(job.id), "reasongen_batch": str(job.batch_id)})
    now = utcnow()
    job.provider_batch_id, job.state, job.status, job.submitted_at = found.id, "submitted", found.status, now
    job.expires_at = _ts(found.expires_at) or now + timedelta(hours=24)
    job.next_poll_at, job.error = now + timedelta(seconds=settings.batch_poll_min_s), None


def _poll(wiring: Wiring, uow: Any, client: Any, job: Any) -> None:
    if job.cancel_requested and job.status not in TERMINAL and job.status != "cancelling":
        client.batches.cancel(job.provider_batch_id)
    remote = client.batches.retrieve(job.provider_batch_id)
    counts = remote.request_counts
    changed = (remote.status, getattr(counts, "completed", 0), getattr(counts, "failed", 0)) != (
        job.status, job.completed, job.failed)
    job.status, job.polls = remote.status, 0 if changed else job.polls + 1
    job.completed, job.failed = getattr(counts, "completed", 0) or 0, getattr(counts, "failed", 0) or 0
    now = utcnow()
    for file_id in (remote.output_file_id, remote.error_file_id):
        if file_id and file_id not in (job.output_file_id, job.error_file_id):
            ingest_file(wiring.settings, uow, client, job, file_id)
    if remote.output_file_id:
        job.output_file_id = remote.output_file_id
    if remote.error_file_id:
        job.error_file_id = remote.error_file_id
    if remote.status in TERMINAL:
        errors = getattr(remote, "errors", None)
        if errors and getattr(errors, "data", None):
            job.error = "; ".join(f"line {e.line}: {e.message}" for e in errors.data[:5])
        close_job(uow, wiring.settings, job, remote.status, now)
        return
    s = wiring.settings
    job.next_poll_at = now + timedelta(seconds=min(s.batch_poll_max_s, s.batch_poll_min_s * 2 ** min(job.polls, 12)))


def _later(wiring: Wiring, job_id: int, error: str) -> None:
    try:
        with wiring.uow() as uow:
            job = uow.provider_jobs.get(job_id)
            if job is not None:
                job.error = error
                job.next_poll_at = utcnow() + timedelta(seconds=wiring.settings.batch_poll_min_s)
                uow.commit()
    except Exception:  # noqa: BLE001 - the database itself is away: the job stays due
        log.debug("could not note the error of provider job %s", job_id, exc_info=True)


def cancel(wiring: Wiring, batch_id: int, client: Any = None) -> int:
    """Ask for every open job of the batch to be cancelled (sent now when possible, else by the next poll)."""
    with wiring.uow() as uow:
        jobs = [j for j in uow.provider_jobs.for_batch(batch_id) if j.state in ("collecting", "new", "uploaded",
                                                                                "submitted")]
        for job in jobs:
            job.cancel_requested, job.next_poll_at = True, None
            if job.state == "collecting":
                job.state = "new"
        uow.commit()
    if jobs:
        try:
            poll(wiring, client, batch_id=batch_id)
        except Exception:  # noqa: BLE001 - recorded; the sweeper's poll sends the cancel later
            log.warning("cancel of batch %s: provider not reachable now; the poller will retry", batch_id)
    return len(jobs)


def _ts(value: Any) -> datetime | None:
    return datetime.fromtimestamp(value, timezone.utc) if value else None

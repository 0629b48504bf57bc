"""What comes back from a provider batch job: results written, retries gathered, the batch finished.

A line is handled once: its request row is locked and must still be ``sent``, so a file read twice (a poller
killed before its commit, two pollers) writes nothing twice. Retries (errors, expired or cancelled-by-the-
provider requests, structured-output fallbacks, repairs) go into the batch's ``collecting`` job, which becomes
a new job when the job that produced them closes; a request out of attempts becomes a failed result with why.
What a result is (a draft, a judgement) is the batch's stage (generation/provider_batch/stage.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from generation.provider_batch.requests import line, new_custom_id
from generation.provider_batch.results import decide, read_line
from generation.provider_batch.stage import Stage, stage_for
from generation.records import DraftResult
from storage.models import Chunk, ProviderRequest
from workers.batches import finalize, utcnow

TERMINAL = ("completed", "expired", "cancelled", "failed")
SLICE = 1000


def ingest_file(settings: Any, uow: Any, client: Any, job: Any, file_id: str) -> int:
    """Handle every line of an output or error file; returns how many were new."""
    raw = client.files.content(file_id).content
    parsed = [read_line(x) for x in raw.splitlines() if x.strip()]
    batch = uow.batches.get(job.batch_id)
    stage = stage_for(batch)
    # In slices: statements stay small (PostgreSQL refuses IN lists of tens of thousands of pairs).
    return sum(_ingest_lines(settings, uow, stage, batch, job, parsed[i : i + SLICE])
               for i in range(0, len(parsed), SLICE))


def _ingest_lines(settings: Any, uow: Any, stage: Stage, batch: Any, job: Any,
                  parsed: list[tuple[str, Any, Any]]) -> int:
    requests = uow.provider_jobs.by_custom_ids([custom_id for custom_id, _, _ in parsed])
    done: list[tuple[Any, DraftResult]] = []
    now, new = utcnow(), 0
    for custom_id, response, error in parsed:
        req = requests.get(custom_id)
        if req is None or req.state != "sent":
            continue
        new += 1
        out = decide(stage, req.body, req.kind, response, error)
        req.prompt_tokens, req.completion_tokens, req.finished_at = out.prompt_tokens, out.completion_tokens, now
        if out.draft is not None:
            req.state, req.error = ("failed" if out.draft.failed else "done"), out.draft.error
            done.append((req, out.draft))
        else:
            assert out.next_body is not None
            done.extend(_again(settings, uow, batch, job, req, out.next_body, out.kind, out.counts_attempt,
                               out.error))
    write_results(settings, uow, stage, batch, done)
    return new


def stopping(batch: Any) -> bool:
    """A cancelled (or stopped) batch sends nothing more; once resumed, what its jobs left is sent again."""
    return bool(batch.status != "running")


def _again(settings: Any, uow: Any, batch: Any, job: Any, req: Any, body: dict[str, Any], kind: str, counts: bool,
           error: str | None) -> list[tuple[Any, DraftResult]]:
    """Send this request again in the next job, or give up with a failed result when out of attempts."""
    if stopping(batch):
        req.state, req.error = "cancelled", f"cancelled by user; last: {error}"
        return []
    attempt = req.attempt + (1 if counts else 0)
    if attempt > settings.max_attempts:
        req.state, req.error = "failed", f"gave up after {req.attempt} attempts; last: {error}"
        return [(req, DraftResult(error=req.error, finish_reason="error"))]
    req.state, req.error = "resent", error
    add_to_collector(uow, job.batch_id, req, body, kind, attempt, job.attempt + 1, job.model, job.endpoint)
    return []


def add_to_collector(uow: Any, batch_id: int, req: Any, body: dict[str, Any], kind: str, attempt: int,
                     job_attempt: int, model: str, endpoint: str | None) -> None:
    """The request's next try, in the batch's ``collecting`` job (made when there is none)."""
    collector = uow.provider_jobs.collector(batch_id) or uow.provider_jobs.add_job(
        batch_id=batch_id, attempt=job_attempt, state="collecting", model=model, endpoint=endpoint,
        requests=0, bytes=0, completed=0, failed=0, polls=0, cancel_requested=False)
    custom_id = new_custom_id(batch_id, req.record_id)
    uow.session.add(ProviderRequest(job_id=collector.id, batch_id=batch_id, record_id=req.record_id,
                                    draft_id=req.draft_id, custom_id=custom_id, cache_key=req.cache_key,
                                    attempt=attempt, kind=kind, body=body, state="sent", prompt_tokens=0,
                                    completion_tokens=0))
    collector.requests += 1
    collector.bytes += len(line(custom_id, body))


def write_results(settings: Any, uow: Any, stage: Stage, batch: Any, done: list[tuple[Any, DraftResult]]) -> None:
    if done:
        count_progress(uow, batch.id, stage.write(settings, uow, batch, done))


def count_progress(uow: Any, batch_id: int, outcome: dict[int, bool]) -> None:
    """Items finished (or failed) so far, on their chunks: what `status` counts."""
    if not outcome:
        return
    for chunk in uow.chunks.for_batch(batch_id):
        mine = [outcome[r] for r in chunk.record_ids if r in outcome]
        if mine:
            chunk.n_failed += sum(mine)
            chunk.n_done += len(mine) - sum(mine)


def close_job(uow: Any, settings: Any, job: Any, status: str, now: datetime) -> None:
    """A job ended: its unanswered requests are retried, cancelled or failed; the next job and the batch move."""
    batch = uow.batches.get(job.batch_id)
    stage = stage_for(batch)
    left = list(uow.provider_jobs.requests_of(job.id, ["sent"]))
    if stopping(batch):
        uow.provider_jobs.set_state(job.id, ["sent"], "cancelled", "cancelled by user", now)
    elif status == "failed":
        why = f"provider job failed: {job.error or 'validation failed'}"
        for req in left:
            req.state, req.error = "failed", why
        for i in range(0, len(left), SLICE):
            write_results(settings, uow, stage, batch, [(r, DraftResult(error=why, finish_reason="error"))
                                                          for r in left[i : i + SLICE]])
    else:
        failed = []
        for req in left:
            failed += _again(settings, uow, batch, job, req, req.body, req.kind, True,
                             f"no answer in a job that ended {status}")
        for i in range(0, len(failed), SLICE):
            write_results(settings, uow, stage, batch, failed[i : i + SLICE])
    job.state, job.finished_at, job.status = "done", now, status
    collector = uow.provider_jobs.collector(job.batch_id)
    if collector is not None:
        collector.state = "new"
        collector.cancel_requested = stopping(batch)
    finish_if_complete(uow, job.batch_id, now)


def finish_if_complete(uow: Any, batch_id: int, now: datetime) -> bool:
    if uow.provider_jobs.open_count(batch_id) or uow.provider_jobs.open_requests(batch_id):
        return False
    uow.session.query(Chunk).filter(Chunk.batch_id == batch_id, Chunk.status == "provider").update(
        {"status": "done", "finished_at": now}, synchronize_session=False)
    uow.session.flush()
    finalize(uow, batch_id, now)
    return True


"""What comes back from a provider batch job: drafts written, retries gathered, the batch finished.

A line is handled once: its request row is locked and must still be ``sent``, so a file read twice (a poller
killed before its commit, two pollers) writes nothing twice. Retries (errors, expired or cancelled-by-the-
provider requests, structured-output fallbacks, repairs) go into the batch's ``collecting`` job, which becomes
a new job when the job that produced them closes; a request out of attempts becomes a failed draft with why.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from generation.checks import check_draft
from generation.provider_batch.prices import cost
from generation.provider_batch.requests import line, new_custom_id
from generation.provider_batch.results import decide, read_line
from generation.records import DraftResult
from generation.restructure import restructure
from storage.models import Chunk, ProviderRequest
from workers.batches import finalize, utcnow

TERMINAL = ("completed", "expired", "cancelled", "failed")
SLICE = 1000


def ingest_file(settings: Any, uow: Any, client: Any, job: Any, file_id: str) -> int:
    """Handle every line of an output or error file; returns how many were new."""
    raw = client.files.content(file_id).content
    parsed = [read_line(x) for x in raw.splitlines() if x.strip()]
    # In slices: statements stay small (PostgreSQL refuses IN lists of tens of thousands of pairs).
    return sum(_ingest_lines(settings, uow, job, parsed[i : i + SLICE]) for i in range(0, len(parsed), SLICE))


def _ingest_lines(settings: Any, uow: Any, job: Any, parsed: list[tuple[str, Any, Any]]) -> int:
    requests = uow.provider_jobs.by_custom_ids([custom_id for custom_id, _, _ in parsed])
    drafts: list[tuple[Any, DraftResult]] = []
    now, new = utcnow(), 0
    for custom_id, response, error in parsed:
        req = requests.get(custom_id)
        if req is None or req.state != "sent":
            continue
        new += 1
        out = decide(req.body, req.kind, response, error)
        req.prompt_tokens, req.completion_tokens, req.finished_at = out.prompt_tokens, out.completion_tokens, now
        if out.draft is not None:
            req.state, req.error = ("failed" if out.draft.failed else "done"), out.draft.error
            drafts.append((req, out.draft))
        else:
            assert out.next_body is not None
            drafts.extend(_again(settings, uow, job, req, out.next_body, out.kind, out.counts_attempt, out.error))
    write_drafts(settings, uow, job.batch_id, drafts)
    return new


def _again(settings: Any, uow: Any, job: Any, req: Any, body: dict[str, Any], kind: str, counts: bool,
           error: str | None) -> list[tuple[Any, DraftResult]]:
    """Send this request again in the next job, or give up with a failed draft when out of attempts."""
    if job.cancel_requested:  # a cancelled batch sends nothing more
        req.state, req.error = "cancelled", f"cancelled by user; last: {error}"
        return []
    attempt = req.attempt + (1 if counts else 0)
    if attempt > settings.max_attempts:
        req.state, req.error = "failed", f"gave up after {req.attempt} attempts; last: {error}"
        return [(req, DraftResult(error=req.error, finish_reason="error"))]
    req.state, req.error = "resent", error
    collector = uow.provider_jobs.collector(job.batch_id) or uow.provider_jobs.add_job(
        batch_id=job.batch_id, attempt=job.attempt + 1, state="collecting", model=job.model, endpoint=job.endpoint,
        requests=0, bytes=0, completed=0, failed=0, polls=0, cancel_requested=False)
    custom_id = new_custom_id(job.batch_id, req.record_id)
    uow.session.add(ProviderRequest(job_id=collector.id, batch_id=job.batch_id, record_id=req.record_id,
                                    custom_id=custom_id, cache_key=req.cache_key, attempt=attempt, kind=kind,
                                    body=body, state="sent", prompt_tokens=0, completion_tokens=0))
    collector.requests += 1
    collector.bytes += len(line(custom_id, body))
    return []


def write_drafts(settings: Any, uow: Any, batch_id: int, done: list[tuple[Any, DraftResult]]) -> None:
    if not done:
        return
    batch = uow.batches.get(batch_id)
    ids = [req.record_id for req, _ in done]
    views = {r.id: restructure(r) for r in uow.records.by_ids(ids)}
    uow.session.flush()
    tokens = uow.provider_jobs.tokens_of(batch_id, ids)
    rows = []
    for req, result in done:
        view = views[req.record_id]
        result.prompt_tokens, result.completion_tokens = tokens.get(req.record_id, (0, 0))
        result.cost_usd = cost(settings, batch.model, result.prompt_tokens, result.completion_tokens,
                               batch=True)
        if not result.failed:
            result.flags = [*result.flags, *check_draft(view, result)]
        rows.append(_row(batch, view, req.cache_key, result))
    uow.drafts.add_many(rows)
    outcome = {req.record_id: result.failed for req, result in done}
    keys = {req.cache_key for req, _ in done}
    followers = {r: k for r, k in uow.provider_jobs.followers(batch_id).items() if k in keys}
    if followers:
        outcome.update(uow.drafts.share(followers, batch_id, include_failed=True))
        uow.session.query(ProviderRequest).filter(ProviderRequest.batch_id == batch_id,
                                                  ProviderRequest.record_id.in_(list(followers)),
                                                  ProviderRequest.state == "follower").update(
            {"state": "done"}, synchronize_session=False)
    count_progress(uow, batch_id, outcome)


def count_progress(uow: Any, batch_id: int, outcome: dict[int, bool]) -> None:
    """Records drafted (or failed) so far, on their chunks: what `status` counts."""
    if not outcome:
        return
    for chunk in uow.chunks.for_batch(batch_id):
        mine = [outcome[r] for r in chunk.record_ids if r in outcome]
        if mine:
            chunk.n_failed += sum(mine)
            chunk.n_done += len(mine) - sum(mine)


def _row(batch: Any, view: Any, key: str, result: DraftResult) -> dict[str, Any]:
    return dict(
        record_id=view.record_id, batch_id=batch.id, cache_key=key, record_hash=view.content_hash,
        template_name=batch.template_name, template_hash=batch.params.get("template_hash", ""),
        backend=batch.backend, model=batch.model, params=batch.params.get("provider_params") or {},
        transformed_input=result.transformed_input, reasoning=result.reasoning, response=result.response,
        raw_text=result.raw_text, error=result.error, finish_reason=result.finish_reason,
        prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens, cost_usd=result.cost_usd,
        latency_s=0.0, flags=list(result.flags), is_fake=False, status="failed" if result.failed else "pending",
    )


def close_job(uow: Any, settings: Any, job: Any, status: str, now: datetime) -> None:
    """A job ended: its unanswered requests are retried, cancelled or failed; the next job and the batch move."""
    left = list(uow.provider_jobs.requests_of(job.id, ["sent"]))
    if job.cancel_requested:
        uow.provider_jobs.set_state(job.id, ["sent"], "cancelled", "cancelled by user", now)
    elif status == "failed":
        why = f"provider job failed: {job.error or 'validation failed'}"
        for req in left:
            req.state, req.error = "failed", why
        for i in range(0, len(left), SLICE):
            write_drafts(settings, uow, job.batch_id, [(r, DraftResult(error=why, finish_reason="error"))
                                                       for r in left[i : i + SLICE]])
    else:
        failed = []
        for req in left:
            failed += _again(settings, uow, job, req, req.body, req.kind, True,
                             f"no answer in a job that ended {status}")
        for i in range(0, len(failed), SLICE):
            write_drafts(settings, uow, job.batch_id, failed[i : i + SLICE])
    job.state, job.finished_at, job.status = "done", now, status
    collector = uow.provider_jobs.collector(job.batch_id)
    if collector is not None:
        collector.state = "new"
        collector.cancel_requested = job.cancel_requested
    finish_if_complete(uow, job.batch_id, now)


def finish_if_complete(uow: Any, batch_id: int, now: datetime) -> bool:
    if uow.provider_jobs.open_count(batch_id) or uow.provider_jobs.open_requests(batch_id):
        return False
    uow.session.query(Chunk).filter(Chunk.batch_id == batch_id, Chunk.status == "provider").update(
        {"status": "done", "finished_at": now}, synchronize_session=False)
    uow.session.flush()
    finalize(uow, batch_id, now)
    return True


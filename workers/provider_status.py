"""What `status` shows of a batch's provider jobs: state, counts, age and the window left; and mode choice."""

from __future__ import annotations

from typing import Any

from reasongen.bootstrap import Wiring
from workers.batches import utcnow
from workers.monitor import _aware

MODES = ("online", "batch", "auto")


def jobs_summary(uow: Any, batch_id: int) -> list[dict[str, Any]]:
    now = utcnow()
    rows = []
    for job in uow.provider_jobs.for_batch(batch_id):
        created, expires = _aware(job.created_at), _aware(job.expires_at)
        open_ = job.state not in ("done",)
        rows.append(dict(
            job=job.id, attempt=job.attempt, state=job.state, status=job.status, provider_id=job.provider_batch_id,
            requests=job.requests, completed=job.completed, failed=job.failed, bytes=job.bytes,
            age_s=round((now - created).total_seconds(), 1) if created else None,
            window_left_s=round((expires - now).total_seconds(), 1) if expires and open_ else None,
            cancel_requested=job.cancel_requested, error=job.error))
    return rows


def batch_jobs(wiring: Wiring, batch_id: int) -> dict[str, Any] | None:
    """None for a batch that runs online."""
    with wiring.uow() as uow:
        jobs = jobs_summary(uow, batch_id)
        return dict(jobs=jobs, requests=uow.provider_jobs.request_counts(batch_id)) if jobs else None


def job_lines(summary: dict[str, Any]) -> list[str]:
    """Lines under the status table for a batch run through provider batch jobs."""
    provider = summary.get("provider_jobs")
    if not provider:
        return []
    lines = [f"batch {summary['batch']} provider jobs; requests: "
             + ", ".join(f"{k} {v}" for k, v in sorted(provider["requests"].items()))]
    for j in provider["jobs"]:  # two short lines per job: readable at 80 columns
        lines.append(f"  job {j['job']} (try {j['attempt']}): {j['status'] or j['state']}, {j['completed']}/"
                     f"{j['requests']} done, {j['failed']} failed, {_span(j['age_s'] or 0)} old")
        notes = [] if j["window_left_s"] is None else [f"window left {_span(j['window_left_s'])}"]
        notes += ["cancel requested"] if j["cancel_requested"] else []
        notes += [str(j["error"])[:150]] if j["error"] else []
        if notes:
            lines.append("    " + "; ".join(notes))
    return lines


def _span(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def choose_mode(settings: Any, mode: str, backend: str, records: int, accept_latency: bool) -> tuple[str, str]:
    """(online|batch, why). Batch needs the teacher backend; auto picks batch for runs of at least
    ``batch_auto_threshold`` records when the caller accepts results within the provider's 24-hour window."""
    if mode not in MODES:
        raise ValueError(f"--mode must be one of: {', '.join(MODES)} (got {mode!r})")
    if mode == "online":
        return "online", "asked for"
    if backend != "teacher":
        if mode == "batch":
            raise ValueError(f"--mode batch needs --backend teacher (got {backend!r}): only a provider has a batch API")
        return "online", f"backend {backend} has no batch API"
    if mode == "batch":
        return "batch", "asked for"
    threshold = settings.batch_auto_threshold if settings is not None else 0
    if records < threshold:
        return "online", f"{records} records, under the batch threshold of {threshold}"
    if not accept_latency:
        return "online", (f"{records} records would go to batch mode at half price, but results can take up to 24 h: "
                          "add --accept-latency to allow it")
    return "batch", f"{records} records >= {threshold}, latency accepted: half price"

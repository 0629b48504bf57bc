"""What `status` and `workers` show, read from the database (and the broker for queue depths)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select

from judging import gate
from reasongen.bootstrap import Wiring
from storage.models import Batch
from workers import broker
from workers.batches import utcnow


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything is stored in UTC.
    return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


def batch_summary(wiring: Wiring, batch_id: int) -> dict[str, Any]:
    with wiring.uow() as uow:
        batch = uow.batches.get(batch_id)
        done, failed = uow.chunks.record_counts(batch_id)
        states = uow.chunks.count(batch_id)
        totals = uow.batch_stats.draft_totals(batch_id)
        errors = uow.batch_stats.top_errors(batch_id)
        summary = _summary(batch, done, failed, states, totals, errors)
        summary["shared"] = uow.batch_stats.shared(batch_id)
        summary["followup"] = _followup(batch)
        # Paid for but thrown away by the fence (a lost lease, a cancel): not in cost_usd, which counts drafts.
        summary["discarded_usd"], summary["discarded_tokens"] = batch.discarded_usd, batch.discarded_tokens
        summary.update(gate.summary(uow, batch))  # judge spend; "waiting for review: N" behind the gate
        summary["provider_jobs"] = _provider_jobs(uow, batch_id)
        teacher = (batch.endpoint, batch.model) if batch.backend == "teacher" else None
    summary["rate_limit"] = _learned_rate(wiring, teacher)
    return summary


def _learned_rate(wiring: Wiring, teacher: tuple[str | None, str] | None) -> dict[str, Any] | None:
    """The request rate the teacher's workers learned from 429s (no RPM given; shared through Redis), if any."""
    if teacher is None:
        return None
    from generation.ratelimit import learned_limit

    return learned_limit(wiring.settings.effective_redis_url(), *teacher)


def _teacher_endpoints(uow: Any, chunk_ids: list[int]) -> dict[int, tuple[str | None, str]]:
    """Each chunk's teacher (endpoint, model), for the pace its workers share; other backends left out."""
    from storage.models import Chunk

    if not chunk_ids:
        return {}
    stmt = (select(Chunk.id, Batch.endpoint, Batch.model).join(Batch, Batch.id == Chunk.batch_id)
            .where(Chunk.id.in_(chunk_ids), Batch.backend == "teacher"))
    return {int(i): (endpoint, model) for i, endpoint, model in uow.session.execute(stmt)}


def _provider_jobs(uow: Any, batch_id: int) -> dict[str, Any] | None:
    """--mode batch: each provider job's state, counts, age and window left (workers/provider_status.py)."""
    from workers.provider_status import jobs_summary

    jobs = jobs_summary(uow, batch_id)
    return dict(jobs=jobs, requests=uow.provider_jobs.request_counts(batch_id)) if jobs else None


def _followup(batch: Batch) -> dict[str, Any] | None:
    """The `--then` follow-up's state (pending|running|done|failed|skipped) and error, if the batch has one."""
    if not batch.then:
        return None
    return dict(then=batch.then, state=batch.followup_status or ("waiting" if batch.finished_at else "not yet"),
                error=batch.followup_error)


def _summary(batch: Batch, done: int, failed: int, states: dict[str, int], totals: dict[str, Any],
             errors: list[tuple[str, int]]) -> dict[str, Any]:
    started, finished = _aware(batch.started_at), _aware(batch.finished_at)
    elapsed = max(((finished or utcnow()) - started).total_seconds(), 1e-6) if started else 0.0
    pending = max(batch.total_records - done - failed, 0)
    rate = (done + failed) / elapsed * 60 if elapsed else 0.0
    eta = None if finished or not rate else pending / rate * 60
    return dict(
        batch=batch.id, kind=batch.kind, status=batch.status, reason=batch.status_reason, backend=batch.backend,
        model=batch.model, template=batch.template_name, total=batch.total_records, done=done, failed=failed,
        pending=pending, chunks=states, records_per_min=round(rate, 1), elapsed_s=round(elapsed, 1),
        eta_s=None if eta is None else round(eta, 1), tokens=totals["prompt_tokens"] + totals["completion_tokens"],
        cost_usd=round(totals["cost_usd"], 6), max_cost_usd=batch.max_cost_usd, max_tokens=batch.max_tokens,
        then=batch.then, followup_enqueued_at=batch.followup_enqueued_at, finished=finished is not None,
        errors=[{"error": e, "count": n} for e, n in errors],
        teacher=dict(response_mode=batch.response_mode, concurrency_limit=batch.concurrency_limit,
                     concurrency_reason=batch.concurrency_reason) if batch.response_mode else None,
    )


def recent_summaries(wiring: Wiring, limit: int = 10) -> list[dict[str, Any]]:
    with wiring.uow() as uow:
        ids = [b.id for b in uow.batches.recent(limit)]
    return [batch_summary(wiring, i) for i in ids]


def workers_report(wiring: Wiring) -> dict[str, Any]:
    """Live workers (heartbeat within three intervals) and the broker's queue depths."""
    s = wiring.settings
    live = workers_report_rows(wiring)
    with wiring.uow() as uow:
        chunks = [w["current_chunk"] for w in live if w["current_chunk"]]
        limits = uow.chunks.concurrency_limits(chunks)
        endpoints = _teacher_endpoints(uow, chunks)
    paces = {e: _learned_rate(wiring, e) for e in set(endpoints.values())}
    for w in live:  # the teacher's throttle for the batch this worker is on: its in-flight limit and learned pace
        w["teacher_limit"] = limits.get(w["current_chunk"]) if w["current_chunk"] else None
        pace = paces.get(endpoints.get(w["current_chunk"])) if w["current_chunk"] else None  # type: ignore[arg-type]
        w["teacher_learned_rpm"] = pace["learned_rpm"] if pace else None
    depths = broker.queue_depths(s) if s.broker_url else None
    return dict(workers=live, queues=depths)


def unserved(wiring: Wiring, summaries: list[dict[str, Any]]) -> dict[int, str]:
    """Batches with chunks queued on a queue no live worker consumes: {batch id: queue kind, as `reasongen worker
    --queues` takes it}. Without a broker (work runs in the CLI) nothing is unserved."""
    from workers.app import queue_for_backend

    waiting = [s for s in summaries if not s["finished"] and s["chunks"].get("queued")]
    if not waiting or not wiring.settings.broker_url:
        return {}
    served = {q for w in workers_report_rows(wiring) for q in w["queues"]}
    needs = {s["batch"]: queue_for_backend(wiring.settings, s["backend"]) for s in waiting}
    prefix = wiring.settings.queue_prefix
    return {batch: queue.removeprefix(prefix) for batch, queue in needs.items() if queue not in served}


def workers_report_rows(wiring: Wiring) -> list[dict[str, Any]]:
    """Live workers only (heartbeat within three intervals), without the broker round trip."""
    now = utcnow()
    with wiring.uow() as uow:
        return [_worker(w, now) for w in uow.heartbeats.all()
                if (now - _aware(w.last_seen)).total_seconds() <= 3 * wiring.settings.heartbeat_interval_s]  # type: ignore[operator]


def _worker(w: Any, now: datetime) -> dict[str, Any]:
    return dict(hostname=w.hostname, queues=w.queues, concurrency=w.concurrency, pid=w.pid,
                current_chunk=w.current_chunk_id, records_processed=w.records_processed,
                last_heartbeat_s_ago=round((now - _aware(w.last_seen)).total_seconds(), 1))  # type: ignore[operator]

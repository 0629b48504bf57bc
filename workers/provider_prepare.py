"""Turning a planned batch into provider jobs: every request line and its record written before any upload.

One transaction: the jobs (state ``new``), each request's ``custom_id`` -> record, cache key and exact body,
and the batch's chunks set aside (status ``provider``: no worker takes them). Records already drafted under
the same cache key are skipped; records identical to one already requested follow it (``follower``) and get
a copy of its draft, as in online mode.
"""

from __future__ import annotations

from typing import Any

from generation.backends import create_backend
from generation.provider_batch.requests import Limits, first_body, line, new_custom_id, split
from generation.restructure import restructure
from generation.run import cache_key
from generation.templates import load_template
from reasongen.bootstrap import Wiring
from storage.models import Chunk
from workers.batches import utcnow
from workers.provider_ingest import count_progress, finish_if_complete

SLICE = 2000


def limits_of(settings: Any) -> Limits:
    return Limits(settings.batch_max_requests, settings.batch_max_bytes)


def prepare(wiring: Wiring, batch_id: int) -> list[int]:
    """Write the batch's provider jobs and requests; returns the new job ids (none if already prepared)."""
    settings = wiring.settings
    with wiring.uow() as uow:
        batch = uow.batches.lock(batch_id)
        if uow.provider_jobs.for_batch(batch_id):
            return []
        backend = create_backend(batch.backend, settings, model=batch.model,
                                 **dict(batch.params.get("backend_options") or {}))
        try:
            template = load_template(batch.template_name, settings.templates_dir)
            notes = {int(k): v for k, v in (batch.params.get("notes") or {}).items()}
            lines, followers, drafted = _lines(uow, batch_id, backend, template, notes)
            batch.params = {**batch.params, "provider_params": backend.cache_params(), "mode": "batch"}
        finally:
            close = getattr(backend, "close", None)
            if close:
                close()
        now, job_ids = utcnow(), []
        for part in split(lines, limits_of(settings)):
            job = uow.provider_jobs.add_job(batch_id=batch_id, attempt=1, state="new", model=batch.model,
                                            endpoint=settings.openai_base_url, requests=len(part),
                                            bytes=sum(len(data) for _, data in part), completed=0, failed=0,
                                            polls=0, cancel_requested=False)
            uow.provider_jobs.add_requests([{**row, "job_id": job.id, "state": "sent", "created_at": now}
                                            for row, _ in part])
            job_ids.append(job.id)
        if followers:  # a follower's leader is always in a job (a drafted key skips all its records)
            uow.provider_jobs.add_requests([{**row, "job_id": job_ids[0], "state": "follower", "created_at": now}
                                            for row in followers])
        uow.session.query(Chunk).filter(Chunk.batch_id == batch_id, Chunk.status == "queued").update(
            {"status": "provider"}, synchronize_session=False)
        count_progress(uow, batch_id, dict.fromkeys(drafted, False))  # already drafted under the same key
        if not job_ids:  # every record already drafted: nothing to send, the batch is done
            finish_if_complete(uow, batch_id, now)
        uow.commit()
        return job_ids


def _lines(uow: Any, batch_id: int, backend: Any, template: Any,
           notes: dict[int, str]) -> tuple[list[tuple[dict[str, Any], bytes]], list[dict[str, Any]], list[int]]:
    ids = uow.chunks.record_ids(batch_id)
    lines: list[tuple[dict[str, Any], bytes]] = []
    followers: list[dict[str, Any]] = []
    seen: set[str] = set()
    drafted: list[int] = []
    for start in range(0, len(ids), SLICE):
        views = [restructure(r) for r in uow.records.by_ids(ids[start : start + SLICE])]
        keys = {v.record_id: cache_key(v.content_hash, template, backend,
                                       {"note": notes[v.record_id]} if v.record_id in notes else None)
                for v in views}
        done = uow.drafts.drafted(keys)
        drafted.extend(done)
        for view in views:
            key = keys[view.record_id]
            if view.record_id in done:
                continue
            row: dict[str, Any] = {
                "batch_id": batch_id, "record_id": view.record_id, "cache_key": key, "attempt": 1, "kind": "draft",
                "custom_id": new_custom_id(batch_id, view.record_id), "prompt_tokens": 0, "completion_tokens": 0}
            if key in seen:
                followers.append({**row, "body": {}})
                continue
            seen.add(key)
            body = first_body(backend, template.render(view, notes.get(view.record_id)))
            lines.append(({**row, "body": body}, line(row["custom_id"], body)))
    return lines, followers, drafted

"""The generation stage of provider batch mode: one request per record (the template's prompt, online mode's
body and cache key), one draft per answer with the usual checks; identical records share one request."""

from __future__ import annotations

from typing import Any

from generation.backends import create_backend
from generation.backends.chat_format import draft_from
from generation.checks import check_draft
from generation.parse import parse_draft
from generation.provider_batch.prices import cost
from generation.provider_batch.requests import first_body, line, new_custom_id
from generation.provider_batch.stage import Prepared
from generation.records import DraftResult
from generation.restructure import restructure
from generation.run import cache_key
from generation.templates import load_template

SLICE = 2000


class DraftStage:
    name = "generate"
    repairs = True

    def parse(self, text: str, finish_reason: str | None) -> DraftResult:
        return draft_from(parse_draft(text), text, finish_reason)

    def prepare(self, uow: Any, batch: Any, settings: Any) -> Prepared:
        backend = create_backend(batch.backend, settings, model=batch.model,
                                 **dict(batch.params.get("backend_options") or {}))
        try:
            template = load_template(batch.template_name, settings.templates_dir)
            notes = {int(k): v for k, v in (batch.params.get("notes") or {}).items()}
            found = _requests(uow, batch.id, backend, template, notes)
            found.params = {"provider_params": backend.cache_params()}
            return found
        finally:
            close = getattr(backend, "close", None)
            if close:
                close()

    def write(self, settings: Any, uow: Any, batch: Any, done: list[tuple[Any, DraftResult]]) -> dict[int, bool]:
        ids = [req.record_id for req, _ in done]
        views = {r.id: restructure(r) for r in uow.records.by_ids(ids)}
        uow.session.flush()
        tokens = uow.provider_jobs.tokens_of(batch.id, ids)
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
        followers = uow.provider_jobs.followers(batch.id, {req.cache_key for req, _ in done})
        if followers:  # identical records: a copy of the draft, no second request
            outcome.update(uow.drafts.share(followers, batch.id, include_failed=True))
            uow.provider_jobs.followers_done(batch.id, list(followers))
        return outcome


def _requests(uow: Any, batch_id: int, backend: Any, template: Any, notes: dict[int, str]) -> Prepared:
    ids = uow.chunks.record_ids(batch_id)
    out, seen = Prepared(), set()
    for start in range(0, len(ids), SLICE):
        views = [restructure(r) for r in uow.records.by_ids(ids[start : start + SLICE])]
        keys = {v.record_id: cache_key(v.content_hash, template, backend,
                                       {"note": notes[v.record_id]} if v.record_id in notes else None)
                for v in views}
        done = uow.drafts.drafted(keys)  # drafted under the same key already: not sent again
        out.done.update(dict.fromkeys(done, False))
        for view in views:
            key = keys[view.record_id]
            if view.record_id in done:
                continue
            row: dict[str, Any] = {
                "batch_id": batch_id, "record_id": view.record_id, "cache_key": key, "attempt": 1, "kind": "draft",
                "custom_id": new_custom_id(batch_id, view.record_id), "prompt_tokens": 0, "completion_tokens": 0}
            if key in seen:
                out.followers.append({**row, "body": {}})
                continue
            seen.add(key)
            body = first_body(backend, template.render(view, notes.get(view.record_id)))
            out.lines.append(({**row, "body": body}, line(row["custom_id"], body)))
    return out


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

"""Gradual rebuild: find the stale records of a dataset, estimate their cost, make a batch of them.

Stale means: no current draft for this template and model; the record changed since its draft
(``draft.record_hash != record.content_hash``); the template changed since the draft; or the draft was rejected
with a reviewer's note (regenerated with that note in the prompt). A rejected record is left for a person
(``held_back``) instead when regenerating would ask the very question its rejected draft answered (a deterministic
judge gives the same reasons again: the cache would hand back the same draft, batch after batch), or once it was
rejected ``max_regenerations`` times; so an unattended loop of rebuild + judge + policy ends, and stops paying.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from generation.restructure import restructure
from generation.run import cache_key
from generation.tokens import counter_for, prompt_tokens
from reasongen.bootstrap import Wiring
from storage.repositories.records import parse_where
from workers.planning import BatchRequest, resolve

DEFAULT_COMPLETION_TOKENS = 400


@dataclass
class Stale:
    record_id: int
    key: str
    lang: str
    reason: str
    note: str | None = None
    prompt_tokens: int = 0


def why_stale(record: Any, draft: Any, template_hash: str) -> tuple[str, str | None] | None:
    if draft is None:
        return ("no draft", None)
    if draft.record_hash != record.content_hash:
        return ("record changed", None)
    if draft.status == "rejected" and (draft.review_note or "").strip():
        return ("rejected with note", draft.review_note.strip())
    if draft.template_hash != template_hash:
        return ("template changed", None)
    return None


def find_stale(wiring: Wiring, req: BatchRequest, held_back: list[int] | None = None) -> list[Stale]:
    """Stale records in id order (at most ``req.limit``); records rejected too often go to ``held_back``."""
    backend, template = resolve(wiring, req)
    counter = counter_for(wiring.settings.tokenizer_path, backend.model)  # a local model's own tokenizer
    found: list[Stale] = []
    with wiring.uow() as uow:
        ds = uow.records.dataset(req.dataset)
        ids = uow.records.select_ids(ds.id, parse_where(req.where))
        candidates = uow.batch_stats.stale_candidates(ids, template.name, backend.model)
        rejected = [r.id for r, d in candidates if d is not None and d.status == "rejected"]
        times = uow.batch_stats.rejections(rejected, template.name, backend.model) if rejected else {}
        for record, draft in candidates:
            why = why_stale(record, draft, template.hash)
            if why is None:
                continue
            view = restructure(record)
            if draft is not None and why[0] == "rejected with note" and (
                    times.get(record.id, 0) >= wiring.settings.max_regenerations
                    or draft.cache_key == cache_key(view.content_hash, template, backend, {"note": why[1]})):
                if held_back is not None:
                    held_back.append(record.id)
                continue
            prompt = template.render(view, why[1])
            tokens = prompt_tokens(prompt, counter)
            found.append(Stale(record.id, record.key, record.lang, why[0], why[1], tokens))
            if req.limit is not None and len(found) >= req.limit:
                break
    return found


def estimate(wiring: Wiring, model: str, stale: list[Stale]) -> dict[str, Any]:
    with wiring.uow() as uow:
        per_record = uow.batch_stats.completion_tokens_avg(model) or DEFAULT_COMPLETION_TOKENS
    prompt = sum(s.prompt_tokens for s in stale)
    completion = int(per_record * len(stale))
    price = wiring.settings.prices.get(model)
    cost = (prompt * price[0] + completion * price[1]) / 1e6 if price else 0.0
    return dict(records=len(stale), prompt_tokens=prompt, completion_tokens=completion, cost_usd=round(cost, 6),
                priced=price is not None)


def rebuild_request(req: BatchRequest, stale: list[Stale]) -> BatchRequest:
    req.kind = "rebuild"
    req.record_ids = [s.record_id for s in stale]
    req.notes = {s.record_id: s.note for s in stale if s.note}
    req.limit = None
    return req

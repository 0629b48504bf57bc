"""Gradual rebuild: find the stale records of a dataset, estimate their cost, make a batch of them.

Stale means: no current draft for this template and model; the record changed since its draft
(``draft.record_hash != record.content_hash``); the template changed since the draft; or the draft was rejected
with a reviewer's note (regenerated with that note in the prompt).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from generation.restructure import restructure
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


def find_stale(wiring: Wiring, req: BatchRequest) -> list[Stale]:
    backend, template = resolve(wiring, req)
    counter = counter_for(wiring.settings.tokenizer_path, backend.model)  # a local model's own tokenizer
    found: list[Stale] = []
    with wiring.uow() as uow:
        ds = uow.records.dataset(req.dataset)
        ids = uow.records.select_ids(ds.id, parse_where(req.where))
        for record, draft in uow.batch_stats.stale_candidates(ids, template.name, backend.model):
            why = why_stale(record, draft, template.hash)
            if why is None:
                continue
            prompt = template.render(restructure(record), why[1])
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

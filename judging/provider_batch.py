"""The judge stage of provider batch mode (``reasongen judge --mode batch``): the online teacher judge's
requests (same rubric prompt, judgement schema, body and cache key), sent as provider batch jobs at the batch
price; each answer is committed as a judgement per draft exactly like the online judge does (a reply that is
not valid JSON or misses a score is a failed judgement naming why; a policy decides as they land).

The item of a judge request is the draft it scores (``provider_requests.draft_id``). Drafts already judged under
the same key are not sent; two drafts with the same key (same text, same judge and rubric) share one request.
"""

from __future__ import annotations

from typing import Any

from generation.backends.chat_format import MODES, messages_for
from generation.provider_batch.prices import cost
from generation.provider_batch.requests import body_for, line, new_custom_id
from generation.provider_batch.stage import Prepared
from generation.records import DraftResult
from generation.restructure import restructure
from judging import criteria as crit
from judging.judges import create_judge, judgement_of
from judging.rubric import Rubric, load_rubric
from judging.run import draft_fields, drafts_stmt, judgement_key, judgement_row
from judging.teacher import judgement_format, read_judgement
from review.policy import apply_to_drafts, load_policy

SLICE = 2000


class _Judge:
    """What a judgements row names: the batch's judge (the teacher, never a fake)."""

    name, is_fake = "teacher", False

    def __init__(self, model: str):
        self.model = model


class JudgeStage:
    name = "judge"
    repairs = False  # as online: an unreadable judgement fails and decides nothing

    def parse(self, text: str, finish_reason: str | None) -> DraftResult:
        return read_judgement(text, finish_reason)

    def prepare(self, uow: Any, batch: Any, settings: Any) -> Prepared:
        spec = batch.params["judge"]
        rubric = _rubric(settings, batch)
        judge = create_judge(spec["backend"], settings, model=spec.get("model"), **dict(spec.get("options") or {}))
        try:
            out = Prepared(params={"provider_params": judge.cache_params()})
            ids = uow.chunks.record_ids(batch.id)  # a judge batch's chunks hold draft ids
            for start in range(0, len(ids), SLICE):
                _requests(uow, batch, judge, rubric, ids[start : start + SLICE], out)
        finally:
            close = getattr(judge, "close", None)
            if close:
                close()
        if batch.params.get("policy") and out.done:  # judged earlier: the policy still decides them now
            uow.session.flush()
            apply_to_drafts(uow, load_policy(uow, batch.params["policy"]), list(out.done))
        return out

    def write(self, settings: Any, uow: Any, batch: Any, done: list[tuple[Any, DraftResult]]) -> dict[int, bool]:
        spec = batch.params["judge"]  # the rubric the requests were built with, even if its file changed since
        rubric = (spec.get("rubric") or "default", spec["rubric_hash"])
        ids = [req.draft_id for req, _ in done]
        pairs = {d.id: (d, r) for d, r in uow.session.execute(drafts_stmt(ids))}
        uow.session.flush()
        tokens = uow.provider_jobs.tokens_of(batch.id, ids, by_draft=True)
        rows, outcome = [], {}
        for req, reply in done:
            draft, record = pairs[req.draft_id]
            view = restructure(record)  # the criteria asked are the ones the rubric listed for this record
            reply.prompt_tokens, reply.completion_tokens = tokens.get(draft.id, (0, 0))
            reply.cost_usd = cost(settings, batch.model, reply.prompt_tokens, reply.completion_tokens, batch=True)
            result = judgement_of(crit.applicable(view.lang, view.uniqueness), reply)
            rows.append(judgement_row(batch.id, _Judge(batch.model), rubric, draft.id, req.cache_key, result))
            outcome[draft.id] = result.failed
        uow.judgements.add_many(rows)
        keys = {req.cache_key: outcome[req.draft_id] for req, _ in done}
        followers = uow.provider_jobs.followers(batch.id, set(keys), by_draft=True)
        if followers:  # same text, judge and rubric: the one judgement stands for both (one row per key)
            outcome.update({d: keys[k] for d, k in followers.items()})
            uow.provider_jobs.followers_done(batch.id, list(followers), by_draft=True)
        if batch.params.get("policy"):
            uow.session.flush()
            apply_to_drafts(uow, load_policy(uow, batch.params["policy"]), list(outcome))
        return outcome


def _rubric(settings: Any, batch: Any) -> Rubric:
    spec = batch.params["judge"]
    rubric = load_rubric(spec.get("rubric") or "default", settings.templates_dir)
    if rubric.hash != spec.get("rubric_hash", rubric.hash):  # as judging/step.py: never judge with another rubric
        raise RuntimeError(f"rubric {rubric.name!r} changed since batch {batch.id} was planned; "
                           "start a new judge batch for the new rubric")
    return rubric


def _requests(uow: Any, batch: Any, judge: Any, rubric: Rubric, ids: list[int], out: Prepared) -> None:
    seen = {row["cache_key"] for row, _ in out.lines}
    pairs = list(uow.session.execute(drafts_stmt(ids)))
    keys = {d.id: judgement_key(d, judge, rubric) for d, _ in pairs if d.status != "failed"}
    judged = uow.judgements.existing_keys(keys.values())
    transport = judge.transport
    for draft, record in pairs:
        if draft.id not in keys:  # a failed draft has nothing to judge: skipped, as online
            out.done[draft.id] = False
            continue
        key = keys[draft.id]
        if key in judged:
            out.done[draft.id] = False
            continue
        row: dict[str, Any] = {
            "batch_id": batch.id, "record_id": record.id, "draft_id": draft.id, "cache_key": key, "attempt": 1,
            "kind": "judge", "custom_id": new_custom_id(batch.id, record.id), "prompt_tokens": 0,
            "completion_tokens": 0}
        if key in seen:
            out.followers.append({**row, "body": {}})
            continue
        seen.add(key)
        prompt = rubric.render(draft.id, restructure(record), draft_fields(draft))
        mode = getattr(transport, "response_mode", MODES[0])
        body = judgement_format(body_for(transport, messages_for(prompt.prompt), mode))
        out.lines.append(({**row, "body": body}, line(row["custom_id"], body)))

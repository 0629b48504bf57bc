"""Judge a list of drafts: what one judge chunk (or a generate chunk with --judge) calls.

Like generation: sub-batches are the unit of commit, several are in flight when the judge can ``submit``,
and the cache key (draft text, judge, model, params, rubric hash) means a draft is never judged twice by the
same judge and rubric; a failed judgement gives its key up to the next run. With a policy, each sub-batch's
decisions are written in the same transaction as its judgements.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from generation.restructure import restructure
from generation.run import RunStats
from judging import criteria as crit
from judging.judges import Judge, JudgeResult, submit
from judging.rubric import JudgePrompt, Rubric
from review.policy import PolicyResult, PolicySpec, apply_to_drafts
from storage.models import Draft, Record
from storage.uow import UnitOfWork

DEFAULT_SUB_BATCH = 16


@dataclass
class JudgeRun:
    uow_factory: Callable[[], UnitOfWork]
    judge: Judge
    rubric: Rubric
    batch_id: int | None = None
    policy: PolicySpec | None = None
    on_progress: Callable[[RunStats], None] | None = None


@dataclass
class _Sub:
    prompts: list[JudgePrompt]
    keys: dict[int, str]
    results: "Future[list[JudgeResult]]"


def judgement_key(draft: Any, judge: Judge, rubric: Rubric) -> str:
    text = [draft.record_hash, draft.transformed_input, draft.reasoning, draft.response]
    parts = [text, judge.name, judge.model, judge.cache_params(), rubric.hash]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def judge_drafts(run: JudgeRun, draft_ids: Sequence[int], *, sub_batch_size: int | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 decisions: PolicyResult | None = None) -> RunStats:
    stats = RunStats()
    size = sub_batch_size or DEFAULT_SUB_BATCH
    window = max(1, -(-int(getattr(run.judge, "max_in_flight", size)) // size)) if hasattr(run.judge, "submit") else 1
    in_flight: deque[_Sub] = deque()
    ids = list(draft_ids)
    for start in range(0, len(ids), size):
        if should_stop and should_stop():
            stats.stopped = True
            break
        in_flight.append(_start(run, ids[start : start + size], stats, decisions))
        while len(in_flight) >= window:
            _finish(run, in_flight.popleft(), stats, decisions)
    while in_flight:
        _finish(run, in_flight.popleft(), stats, decisions)
    return stats


def _start(run: JudgeRun, ids: Sequence[int], stats: RunStats, decisions: PolicyResult | None) -> _Sub:
    with run.uow_factory() as uow:
        pairs = list(uow.session.execute(drafts_stmt(ids)))
        prompts, keys = [], {}
        for draft, record in pairs:
            if draft.status == "failed":
                stats.skipped += 1
                continue
            keys[draft.id] = judgement_key(draft, run.judge, run.rubric)
            prompts.append((draft, record))
        done = uow.judgements.existing_keys(keys.values())
        todo = [(d, r) for d, r in prompts if keys[d.id] not in done]
        stats.skipped += len(prompts) - len(todo)
        rendered = [run.rubric.render(d.id, restructure(r), draft_fields(d)) for d, r in todo]
        cached = [d.id for d, _ in prompts if keys[d.id] in done]
        if cached and run.policy is not None:  # judged earlier: the policy still decides them now
            _decide(run, uow, cached, decisions)
            uow.commit()
    return _Sub(rendered, keys, submit(run.judge, rendered))


def drafts_stmt(ids: Sequence[int]) -> Any:
    """(Draft, Record) pairs of these drafts."""
    from sqlalchemy import select

    return select(Draft, Record).join(Record, Record.id == Draft.record_id).where(Draft.id.in_(list(ids)))


def draft_fields(draft: Draft) -> dict[str, str]:
    return {"transformed_input": draft.transformed_input or "", "reasoning": draft.reasoning or "",
            "response": draft.response or ""}


def _finish(run: JudgeRun, sub: _Sub, stats: RunStats, decisions: PolicyResult | None) -> None:
    results = sub.results.result()
    rows = [_row(run, p, sub.keys[p.draft_id], r) for p, r in zip(sub.prompts, results, strict=True)]
    with run.uow_factory() as uow:
        uow.judgements.add_many(rows)
        if run.policy is not None:
            _decide(run, uow, [p.draft_id for p in sub.prompts], decisions)
        uow.commit()
    for r in results:
        stats.failed += r.failed
        stats.done += not r.failed
        stats.prompt_tokens += r.prompt_tokens
        stats.completion_tokens += r.completion_tokens
        stats.cost_usd += r.cost_usd
    if run.on_progress:
        run.on_progress(stats)


def _decide(run: JudgeRun, uow: Any, draft_ids: list[int], decisions: PolicyResult | None) -> None:
    assert run.policy is not None
    uow.session.flush()
    found = apply_to_drafts(uow, run.policy, draft_ids)
    if decisions is not None:
        decisions.add(found)


def _row(run: JudgeRun, prompt: JudgePrompt, key: str, result: JudgeResult) -> dict[str, Any]:
    return judgement_row(run.batch_id, run.judge, (run.rubric.name, run.rubric.hash), prompt.draft_id, key, result)


def judgement_row(batch_id: int | None, judge: Any, rubric: tuple[str, str], draft_id: int, key: str,
                  result: JudgeResult) -> dict[str, Any]:
    """A judgements row; ``judge`` needs only ``name``, ``model`` and ``is_fake``, ``rubric`` is (name, hash)
    (provider batch mode writes these rows too: judging/provider_batch.py)."""
    overall = None if result.failed or not result.scores else crit.overall({k: v["score"]
                                                                           for k, v in result.scores.items()})
    return dict(draft_id=draft_id, batch_id=batch_id, cache_key=key, backend=judge.name,
                model=judge.model, rubric_name=rubric[0], rubric_hash=rubric[1],
                scores=result.scores if not result.failed else {}, overall=overall, error=result.error,
                raw_text=result.raw_text, prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens, cost_usd=result.cost_usd, latency_s=result.latency_s,
                is_fake=judge.is_fake)

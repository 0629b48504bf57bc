"""The judge step inside a chunk: the seam workers/chunks.py calls.

A ``judge`` batch's chunks carry draft ids; a generate batch started with ``--judge`` judges the current drafts
of its chunk's records right after they are written, in the same chunk, behind the same fence (lease, cancel,
budget), so a judged chunk is one unit of retry.
"""

from __future__ import annotations

import threading
from typing import Any

from generation.run import RunStats
from judging.judges import Judge, create_judge
from judging.rubric import load_rubric
from judging.run import JudgeRun, judge_drafts
from review.policy import PolicyResult, PolicySpec, load_policy

_JUDGES: dict[tuple[Any, ...], Judge] = {}
_LOCK = threading.Lock()


def judge_for(settings: Any, spec: dict[str, Any]) -> Judge:
    """One judge per process and (backend, model, options), shared by its threads (as generation backends)."""
    options = dict(spec.get("options") or {})
    # Keyed by the settings too: another endpoint (or another test's server) is another judge.
    key = (id(settings), getattr(settings, "openai_base_url", None), spec["backend"], spec.get("model"),
           repr(sorted(options.items())))
    with _LOCK:
        if key not in _JUDGES:
            _JUDGES[key] = create_judge(spec["backend"], settings, model=spec.get("model"), **options)
        return _JUDGES[key]


def judges_in_chunk(batch: Any) -> bool:
    return batch.kind == "judge" or bool(batch.params.get("judge"))


def run_judge_step(wiring: Any, guard: Any, lease: Any, batch: Any) -> RunStats | None:
    """Judge what this chunk covers; returns the judge's stats (None when the batch does not judge)."""
    spec = batch.params.get("judge")
    if not spec:
        return None
    rubric = load_rubric(spec.get("rubric") or "default", wiring.settings.templates_dir)
    if rubric.hash != spec.get("rubric_hash", rubric.hash):
        raise RuntimeError(f"rubric {rubric.name!r} changed since batch {batch.id} was planned; "
                           "start a new judge batch for the new rubric")
    policy = _policy(wiring, batch.params.get("policy"))
    run = JudgeRun(guard.uow, judge_for(wiring.settings, spec), rubric, batch_id=batch.id, policy=policy)
    draft_ids = list(lease.record_ids) if batch.kind == "judge" else _current_drafts(wiring, lease, batch)
    stats = judge_drafts(run, draft_ids, sub_batch_size=batch.params.get("sub_batch_size"),
                         should_stop=guard.should_stop, decisions=PolicyResult())
    return stats


def _policy(wiring: Any, name: str | None) -> PolicySpec | None:
    if not name:
        return None
    with wiring.uow() as uow:
        return load_policy(uow, name)


def _current_drafts(wiring: Any, lease: Any, batch: Any) -> list[int]:
    with wiring.uow() as uow:
        found = uow.batch_stats.current_drafts(list(lease.record_ids), batch.template_name, batch.model)
        return sorted(d.id for d in found.values() if d.status != "failed")

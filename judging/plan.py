"""Planning judge work: the judge settings a batch carries, and judge batches over existing drafts.

A judge batch (``kind='judge'``) is an ordinary batch: chunks with leases, budgets, retries, the sweeper,
``status``/``workers``; its chunks carry draft ids instead of record ids, and its backend/model/template columns
name the judge, the judge model and the rubric.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from judging.rubric import load_rubric
from judging.step import judge_for
from review.filters import parse_filter
from review.policy import load_policy
from workers.batches import utcnow
from workers.planning import Planned, split


def judge_params(wiring: Any, backend: str | None, model: str | None = None, rubric: str = "default",
                 policy: str | None = None, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a batch stores to judge (and decide) its drafts; validates every name before anything is queued."""
    params: dict[str, Any] = {}
    if policy:
        with wiring.uow() as uow:
            load_policy(uow, policy)  # a clear error now rather than in every chunk
        params["policy"] = policy
    if backend:
        found = load_rubric(rubric, wiring.settings.templates_dir)
        spec = {"backend": backend, "model": model, "rubric": found.name, "rubric_hash": found.hash,
                "options": dict(options or {})}
        spec["model"] = judge_for(wiring.settings, spec).model
        params["judge"] = spec
    elif policy:
        raise ValueError("--policy decides drafts from a judge's scores: add --judge BACKEND (fake, teacher, local)")
    return params


@dataclass
class JudgeRequest:
    dataset: str
    backend: str = "teacher"
    model: str | None = None
    rubric: str = "default"
    where: str | None = None
    limit: int | None = None
    policy: str | None = None
    chunk_size: int | None = None
    max_cost: float | None = None
    max_tokens: int | None = None
    options: dict[str, Any] = field(default_factory=dict)


def plan_judge_batch(wiring: Any, req: JudgeRequest) -> Planned:
    params = judge_params(wiring, req.backend, req.model, req.rubric, req.policy, req.options)
    spec = params["judge"]
    flt = parse_filter(req.where, dataset=req.dataset)
    chunk_size = req.chunk_size or wiring.settings.chunk_size
    now = utcnow()
    with wiring.uow() as uow:
        ds = uow.records.dataset(req.dataset)
        ids = [s.id for s in uow.reviews.states(flt) if s.status != "failed"][: req.limit]
        if not ids:
            raise ValueError(f"No drafts to judge in dataset {req.dataset!r}"
                             + (f" matching {req.where!r}" if req.where else ""))
        batch = uow.batches.create(
            dataset_id=ds.id, kind="judge", backend=spec["backend"], model=spec["model"],
            template_name=spec["rubric"], params=params, filters={"where": req.where or ""}, status="running",
            chunk_size=chunk_size, total_records=len(ids), max_cost_usd=req.max_cost, max_tokens=req.max_tokens,
            started_at=now)
        chunk_ids = uow.chunks.add(batch.id, split(ids, chunk_size), now)
        uow.commit()
        return Planned(batch.id, spec["backend"], chunk_ids, len(ids))

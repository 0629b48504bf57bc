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
from storage.models import Dataset
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
    draft_ids: list[int] | None = None  # exactly these drafts (retry-failed), instead of --where/--limit
    parent_batch: int | None = None


def plan_judge_batch(wiring: Any, req: JudgeRequest) -> Planned:
    params = judge_params(wiring, req.backend, req.model, req.rubric, req.policy, req.options)
    if req.parent_batch is not None:
        params["parent_batch"] = req.parent_batch
    spec = params["judge"]
    flt = parse_filter(req.where, dataset=req.dataset)
    chunk_size = req.chunk_size or wiring.settings.chunk_size
    now = utcnow()
    with wiring.uow() as uow:
        ds = uow.records.dataset(req.dataset)
        ids = (list(req.draft_ids) if req.draft_ids is not None
               else [s.id for s in uow.reviews.states(flt) if s.status != "failed"][: req.limit])
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


def retry_judge_request(wiring: Any, batch_id: int) -> JudgeRequest | None:
    """The drafts of a judge batch whose last judgement failed, to judge again with the same judge and rubric
    (a failed judgement gives its cache key up, so they are sent again)."""
    with wiring.uow() as uow:
        batch = uow.batches.get(batch_id)
        ids = uow.chunks.record_ids(batch_id)  # a judge batch's chunks hold draft ids
        failed = sorted(uow.judgements.errors_for(ids))
        if not failed:
            return None
        spec = batch.params["judge"]
        return JudgeRequest(dataset=uow.session.get_one(Dataset, batch.dataset_id).name, backend=spec["backend"],
                            model=spec.get("model"), rubric=spec.get("rubric") or "default",
                            policy=batch.params.get("policy"), chunk_size=batch.chunk_size,
                            max_cost=batch.max_cost_usd, max_tokens=batch.max_tokens,
                            options=dict(spec.get("options") or {}), draft_ids=failed, parent_batch=batch_id)

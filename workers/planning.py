"""Making batches: pick the records, split them into chunks, write both in one transaction.

Three kinds: ``generate`` (records matching filters), ``rebuild`` (stale records only) and ``retry`` (the
failed records of an earlier batch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from reasongen.bootstrap import Wiring
from storage.models import FOLLOWUPS, Dataset
from storage.repositories.records import parse_where
from workers.batches import utcnow

@dataclass
class BatchRequest:
    dataset: str
    backend: str = "fake"
    model: str | None = None
    template: str = "reason"  # generation.templates.DEFAULT_TEMPLATE (kept literal: no import at module load)
    where: str | None = None
    limit: int | None = None
    chunk_size: int | None = None
    sub_batch_size: int | None = None
    max_cost: float | None = None
    max_tokens: int | None = None
    then: str | None = None
    backend_options: dict[str, Any] = field(default_factory=dict)
    kind: str = "generate"
    record_ids: Sequence[int] | None = None
    notes: dict[int, str] = field(default_factory=dict)
    parent_batch: int | None = None
    endpoint: str | None = None  # a retry keeps its parent's teacher endpoint
    extra_params: dict[str, Any] = field(default_factory=dict)  # e.g. judge and policy (judging.plan)


@dataclass
class Planned:
    batch_id: int
    backend: str
    chunk_ids: list[int]
    total_records: int
    fresh: bool = True  # planned by this call (False: an existing batch, resumed)


def split(ids: Sequence[int], size: int) -> list[Sequence[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def resolve(wiring: Wiring, req: BatchRequest) -> tuple[Any, Any]:
    """The backend (for its model name; nothing loads yet) and the template, both validated by name."""
    from generation.backends import create_backend
    from generation.templates import load_template

    if req.then is not None and req.then not in FOLLOWUPS:
        raise ValueError(f"--then must be one of: {', '.join(FOLLOWUPS)} (got {req.then!r})")
    settings = wiring.settings
    if req.backend == "teacher" and not (settings.api_key() or settings.openai_base_url or req.endpoint):
        from reasongen.errors import InvalidInput

        raise InvalidInput("--backend teacher needs OPENAI_BASE_URL (a self-hosted OpenAI-compatible server) or "
                           "OPENAI_API_KEY (api.openai.com); neither is set, and nothing is sent to a public API "
                           "by default (or use --backend fake for an offline demo)")
    if req.endpoint is not None and req.endpoint != settings.openai_base_url:
        settings = settings.model_copy(update={"openai_base_url": req.endpoint})
    backend = create_backend(req.backend, settings, model=req.model, **req.backend_options)
    return backend, load_template(req.template, wiring.settings.templates_dir)


def plan_batch(wiring: Wiring, req: BatchRequest) -> Planned:
    from generation.templates import validate_records

    backend, template = resolve(wiring, req)
    chunk_size = req.chunk_size or wiring.settings.chunk_size
    now = utcnow()
    with wiring.uow() as uow:
        ds = uow.records.dataset(req.dataset)
        where = parse_where(req.where)
        ids = list(req.record_ids) if req.record_ids is not None else uow.records.ids(ds.id, where, req.limit)
        if not ids:
            raise ValueError(f"No records to generate in dataset {req.dataset!r}"
                             + (f" matching {req.where!r}" if req.where else ""))
        # Every prompt renders (no unknown variable, no empty section) before any request is sent.
        validate_records(template, (r for part in split(ids, 5000) for r in uow.records.prompt_rows(part)), req.notes)
        batch = uow.batches.create(
            dataset_id=ds.id, kind=req.kind, backend=backend.name, model=backend.model, template_name=template.name,
            params=_params(req, template.hash, bool(wiring.settings.api_key())), filters=where, status="running",
            chunk_size=chunk_size,
            total_records=len(ids), max_cost_usd=req.max_cost, max_tokens=req.max_tokens, then=req.then,
            started_at=now, endpoint=getattr(backend, "base_url", None) if backend.name == "teacher" else None,
        )
        chunk_ids = uow.chunks.add(batch.id, split(ids, chunk_size), now)
        uow.commit()
        return Planned(batch.id, backend.name, chunk_ids, len(ids))


def _params(req: BatchRequest, template_hash: str, key_set: bool = False) -> dict[str, Any]:
    params: dict[str, Any] = {"template_hash": template_hash, "backend_options": req.backend_options}
    if req.sub_batch_size:
        params["sub_batch_size"] = req.sub_batch_size
    if req.notes:
        params["notes"] = {str(k): v for k, v in req.notes.items()}
    if req.parent_batch is not None:
        params["parent_batch"] = req.parent_batch
    if req.backend == "teacher" and key_set:
        params["key_env"] = "OPENAI_API_KEY"  # the variable's name, so a worker without it fails at once
    params.update(req.extra_params)
    return params


def failed_records(wiring: Wiring, batch_id: int) -> list[int]:
    """Records of a batch whose current draft failed, or that sat in a chunk that failed without a draft.

    A retry batch needs no force: a failed draft gives its cache key up to the next attempt."""
    with wiring.uow() as uow:
        batch = uow.batches.get(batch_id)
        in_failed_chunks = {i for c in uow.chunks.for_batch(batch_id, ["failed"]) for i in c.record_ids}
        ids = uow.chunks.record_ids(batch_id)
        status = {i: d.status for i, d in uow.batch_stats.current_drafts(ids, batch.template_name, batch.model).items()}
    return [i for i in ids if status.get(i) == "failed" or (i not in status and i in in_failed_chunks)]


def retry_request(wiring: Wiring, batch_id: int) -> BatchRequest | None:
    ids = failed_records(wiring, batch_id)
    if not ids:
        return None
    with wiring.uow() as uow:
        b = uow.batches.get(batch_id)
        return BatchRequest(
            dataset=uow.session.get_one(Dataset, b.dataset_id).name, backend=b.backend, model=b.model,
            template=b.template_name, chunk_size=b.chunk_size, sub_batch_size=b.params.get("sub_batch_size"),
            backend_options=dict(b.params.get("backend_options") or {}), kind="retry", record_ids=ids,
            parent_batch=batch_id, max_cost=b.max_cost_usd, max_tokens=b.max_tokens, endpoint=b.endpoint,
            extra_params={k: b.params[k] for k in ("judge", "policy") if k in b.params},  # judged like the first
        )

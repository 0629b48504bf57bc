"""The JSON API under /api that the pages use (and scripts, with a bearer token). Documented by OpenAPI."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from review import assignments, service, views
from review.agreement import cohen_kappa, fleiss_kappa
from web.accounts import Principal
from web.decisions import BulkRequest, Decision, bulk_apply, bulk_preview, decide, undo
from web.queries import Filters, filters
from web.security import admin, me, wiring_of

router = APIRouter(prefix="/api", tags=["review"])


def fast_json(data: Any) -> Response:
    """orjson straight to bytes: the queue page is the hot path (FastAPI's generic encoder costs ~5 ms a page)."""
    return Response(orjson.dumps(data, default=str), media_type="application/json")


@router.get("/drafts", summary="A page of the review queue (keyset: pass the last id as after)",
            description="Returns {items: [draft...], next_after: id or null}; drafts in id order.")
def list_drafts(request: Request, flt: Filters = Depends(filters), after: int | None = None,
                limit: int = Query(50, ge=1, le=200)) -> Response:
    with wiring_of(request).uow() as uow:
        rows = uow.reviews.find(flt.draft_filter(after), limit=limit)
    items = [views.draft_dict(r) for r in rows]
    return fast_json({"items": items, "next_after": items[-1]["id"] if len(items) == limit else None})


@router.get("/drafts/{draft_id}", summary="One draft with its record, history and independent decisions")
def get_draft(request: Request, draft_id: int) -> dict[str, Any]:
    with wiring_of(request).uow() as uow:
        row = service.load(uow, draft_id)
        found = views.draft_dict(row)
        found["history"] = [views.event_dict(e) for e in uow.reviews.events(draft_id)]
        found["decisions"] = [{"reviewer": a.reviewer, "decision": a.decision, "note": a.note}
                              for a in assignments.decisions(uow, draft_id)]
        found["required_decisions"] = assignments.required(uow, row.record.dataset_id)
    return found


@router.post("/drafts/{draft_id}/decision", summary="Approve, reject (with a note), edit or reset one draft; "
                                                     "409 with both versions when it changed since you loaded it")
def post_decision(request: Request, draft_id: int, body: Decision, who: Principal = Depends(me)) -> dict[str, Any]:
    return decide(wiring_of(request), who, draft_id, body)


@router.post("/drafts/{draft_id}/release", summary="Give up your lease on a draft you skipped")
def release(request: Request, draft_id: int, who: Principal = Depends(me)) -> dict[str, Any]:
    with wiring_of(request).uow() as uow:
        assignments.release(uow, draft_id, who.name)
        uow.commit()
    return {"released": draft_id}


@router.post("/undo", summary="Undo your latest decision (if nobody changed the draft since)")
def post_undo(request: Request, who: Principal = Depends(me)) -> dict[str, Any]:
    return {"draft_id": undo(wiring_of(request), who)}


@router.post("/bulk/preview", summary="How many drafts a bulk decision by filter would change")
def post_bulk_preview(request: Request, body: BulkRequest) -> dict[str, Any]:
    return {"count": bulk_preview(wiring_of(request), body)}


@router.post("/bulk", summary="Approve or reject every draft matching a filter (after a preview of the count)")
def post_bulk(request: Request, body: BulkRequest, who: Principal = Depends(me)) -> dict[str, Any]:
    return bulk_apply(wiring_of(request), who, body)


@router.get("/agreement", summary="Agreement between reviewers: Cohen's kappa per pair, Fleiss' kappa overall")
def get_agreement(request: Request, dataset: str | None = None) -> dict[str, Any]:
    with wiring_of(request).uow() as uow:
        return {**agreement(assignments.pair_decisions(uow, dataset)), "people_vs_policy": people_vs_policy(uow)}


def people_vs_policy(uow: Any) -> dict[str, Any]:
    """The judge policy's decisions against people's on the same drafts (review.agreement, as the CLI shows it)."""
    from review.agreement import agreement as policy_agreement

    return policy_agreement(uow)


def agreement(items: dict[int, dict[str, str]]) -> dict[str, Any]:
    names = sorted({r for votes in items.values() for r in votes})
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            both = [(v[a], v[b]) for v in items.values() if a in v and b in v]
            if both:
                kappa = cohen_kappa([x for x, _ in both], [y for _, y in both])
                agree = sum(x == y for x, y in both) / len(both)
                pairs.append({"a": a, "b": b, "items": len(both), "agreement": round(agree, 3),
                              "cohen_kappa": None if kappa is None else round(kappa, 3)})
    multi = [list(v.values()) for v in items.values() if len(v) >= 2]
    size = max((len(v) for v in multi), default=0)
    same = [v for v in multi if len(v) == size]
    fleiss = fleiss_kappa(same) if same else None
    return {"pairs": pairs, "overall": {"items": len(same), "raters_per_item": size,
                                        "fleiss_kappa": None if fleiss is None else round(fleiss, 3)}}


@router.get("/adjudication", summary="Drafts whose independent decisions disagree (admins)")
def get_adjudication(request: Request, _: Principal = Depends(admin)) -> list[dict[str, Any]]:
    with wiring_of(request).uow() as uow:
        return [{"draft_id": d, "dataset": ds, "decisions": [{"reviewer": a.reviewer, "decision": a.decision,
                                                              "note": a.note} for a in found]}
                for d, ds, found in assignments.adjudication_queue(uow)]


@router.post("/drafts/{draft_id}/adjudicate", summary="Settle a disagreement: approve or reject (admins)")
def post_adjudicate(request: Request, draft_id: int, body: Decision, who: Principal = Depends(admin)
                    ) -> dict[str, Any]:
    with wiring_of(request).uow() as uow:
        version = service.decide(uow, draft_id, body.version, body.action, who.name, note=body.note)
        uow.commit()
    return {"id": draft_id, "version": version, "state": "decided"}


@router.put("/datasets/{dataset}/required-decisions", summary="Independent decisions needed per draft (admins)")
def put_required(request: Request, dataset: str, n: int = Query(..., ge=1, le=10),
                 _: Principal = Depends(admin)) -> dict[str, Any]:
    with wiring_of(request).uow() as uow:
        assignments.set_required(uow, dataset, n)
        uow.commit()
    return {"dataset": dataset, "required_decisions": n}

"""Pages of the review desk: one draft at a time with the keyboard, bulk by filter, adjudication, agreement."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from review import assignments, service, views
from review.bulk import targets
from storage import models
from storage.repositories.reviews import DraftFilter, DraftRow
from storage.uow import UnitOfWork
from web.accounts import Principal
from web.api import agreement, people_vs_policy
from web.queries import Filters, filters, judge_scores_available
from web.security import admin, me, wiring_of

router = APIRouter(include_in_schema=False)
PAGE = 25  # candidates read per query while looking for a draft this reviewer may claim
MAX_PAGES = 20


def page(request: Request, name: str, **context: Any) -> Response:
    who: Principal = request.state.principal
    response: Response = request.app.state.templates.TemplateResponse(
        request, name, {"me": who, "csrf": who.csrf_token or "", "nav": name.split(".")[0], **context})
    return response


@router.get("/")
def home() -> Response:
    return RedirectResponse("/desk", status_code=303)


@router.get("/desk", response_class=HTMLResponse)
def desk(request: Request, flt: Filters = Depends(filters), draft: int | None = None, after: int | None = None,
         who: Principal = Depends(me)) -> Response:
    error = None
    try:
        base = flt.draft_filter()
    except ValueError as exc:
        error, flt, base = str(exc), Filters(), Filters().draft_filter()
    with wiring_of(request).uow() as uow:
        row, held = _current(uow, base, draft, after, who.name)
        upcoming = uow.reviews.find(dataclasses.replace(base, after_id=row.draft.id), limit=8) if row else []
        extra = _context(uow, row) if row else {}
        uow.commit()  # the lease
    return page(request, "desk.html", flt=flt, row=row, d=views.draft_dict(row) if row else None, held=held,
                upcoming=upcoming, error=error, scores=judge_scores_available(), **extra)


def _current(uow: UnitOfWork, base: DraftFilter, draft: int | None, after: int | None,
             reviewer: str) -> tuple[DraftRow | None, bool]:
    """The draft to show, and whether this reviewer holds its lease (may decide it)."""
    if draft is not None:
        row = service.load(uow, draft)
        n = assignments.required(uow, row.record.dataset_id)
        return row, row.draft.status != "pending" or assignments.claim(uow, draft, reviewer, n)
    per_dataset: dict[int, int] = {}
    for _ in range(MAX_PAGES):
        rows = uow.reviews.find(dataclasses.replace(base, after_id=after), limit=PAGE)
        for ds in {r.record.dataset_id for r in rows} - per_dataset.keys():
            per_dataset[ds] = assignments.required(uow, ds)
        places = {r.draft.id: per_dataset[r.record.dataset_id] for r in rows}
        pending = [r.draft.id for r in rows if r.draft.status == "pending"]
        open_ids = assignments.open_to(uow, pending, reviewer, places) if pending else set()
        for row in rows:
            if row.draft.status != "pending":
                return row, True  # a listing of decided drafts: nothing to lease
            if row.draft.id in open_ids and assignments.claim(uow, row.draft.id, reviewer, places[row.draft.id]):
                return service.load(uow, row.draft.id), True  # as it is now, after the lock
        if len(rows) < PAGE:
            return None, False
        after = rows[-1].draft.id
    return None, False


def _context(uow: UnitOfWork, row: DraftRow) -> dict[str, Any]:
    return {"required": assignments.required(uow, row.record.dataset_id),
            "decisions": assignments.decisions(uow, row.draft.id),
            "judgements": judgements(uow, row.draft.id)}


def judgements(uow: UnitOfWork, draft_id: int) -> list[Any]:
    """The judge's scores and reasons for a draft, newest first (none before the judge's table exists)."""
    table = getattr(models, "Judgement", None)
    if table is None:
        return []
    stmt = select(table).where(table.draft_id == draft_id).order_by(table.id.desc()).limit(3)
    return list(uow.session.scalars(stmt))


@router.get("/desk/bulk", response_class=HTMLResponse)
def bulk_page(request: Request, flt: Filters = Depends(filters)) -> Response:
    error, count = None, None
    try:
        from web.decisions import BulkRequest, bulk_preview

        targets(flt.draft_filter(), "approve")
        count = bulk_preview(wiring_of(request), BulkRequest(action="approve", **dataclasses.asdict(flt)))
    except ValueError as exc:
        error = str(exc)
    return page(request, "bulk.html", flt=flt, count=count, error=error, scores=judge_scores_available())


@router.get("/adjudicate", response_class=HTMLResponse)
def adjudicate_page(request: Request, _: Principal = Depends(admin)) -> Response:
    with wiring_of(request).uow() as uow:
        items = [(uow.reviews.load(d), ds, found) for d, ds, found in assignments.adjudication_queue(uow, 50)]
        agreed = agreement(assignments.pair_decisions(uow))
        required = assignments.requirements(uow)
        datasets = [d.name for d in uow.records.datasets()]
    return page(request, "adjudicate.html", items=items, agreement=agreed, required=required, datasets=datasets)


@router.get("/agreement", response_class=HTMLResponse)
def agreement_page(request: Request, dataset: str | None = None) -> Response:
    with wiring_of(request).uow() as uow:
        agreed = agreement(assignments.pair_decisions(uow, dataset or None))
        policy = people_vs_policy(uow)
    return page(request, "agreement.html", agreement=agreed, dataset=dataset, policy=policy)

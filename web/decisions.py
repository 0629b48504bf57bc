"""The desk's decisions: one draft (single or multi-reviewer), undo, bulk by filter. Thin over review.*."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, Field

from reasongen.bootstrap import Wiring
from review import assignments, bulk, service, views
from review.rules import ConflictError
from storage.uow import UnitOfWork
from web.accounts import Principal
from web.queries import Filters


class Decision(BaseModel):
    action: str = Field(description="approve, reject, edit or reset")
    version: int = Field(description="the draft version you looked at (optimistic locking)")
    note: str | None = Field(None, description="required to reject")
    changes: dict[str, str] | None = Field(None, description="edited text: transformed_input, reasoning, response")


class BulkRequest(BaseModel):
    action: str = Field(description="approve or reject")
    status: str | None = "pending"
    dataset: str | None = None
    lang: str | None = None
    field: str | None = None
    uniqueness: str | None = None
    flag: str | None = None
    score_min: float | None = None
    score_max: float | None = None
    note: str | None = None
    expected: int | None = Field(None, description="the count the preview showed; a different count is refused")

    def filters(self) -> Filters:
        return Filters(self.status or None, self.dataset, self.lang, self.field, self.uniqueness, self.flag,
                       self.score_min, self.score_max)


class ConflictResponse(Exception):
    """A stale decision: the reviewer's version and the draft as it is now, shown side by side."""

    def __init__(self, exc: ConflictError, yours: dict[str, Any], current: dict[str, Any]):
        super().__init__(str(exc))
        self.web_payload = {"conflict": True, "yours": yours, "current": jsonable_encoder(current)}


def decide(wiring: Wiring, who: Principal, draft_id: int, body: Decision) -> dict[str, Any]:
    try:
        with wiring.uow() as uow:
            row = service.load(uow, draft_id)
            n = assignments.required(uow, row.record.dataset_id)
            if n > 1 and body.action in assignments.DECISIONS:
                service.check_version(row, body.version)
                out = assignments.decide(uow, row, who.name, body.action, body.note, n)
                uow.commit()
                return {"id": draft_id, "version": out.version, "state": out.state, "decided": out.decided,
                        "required": n}
            if n > 1 and not who.is_admin:
                raise ValueError(f"drafts of {row.dataset} need {n} independent decisions: approve or reject")
            version = service.decide(uow, draft_id, body.version, body.action, who.name, note=body.note,
                                     changes=body.changes or {}, row=row)  # checks body.version against row
            assignments.release(uow, draft_id, who.name)
            uow.commit()
            return {"id": draft_id, "version": version, "state": "decided", "decided": 1, "required": n}
    except ConflictError as exc:
        with wiring.uow() as uow:
            current = views.draft_dict(service.load(uow, draft_id))
        raise ConflictResponse(exc, body.model_dump(), current) from None


def undo(wiring: Wiring, who: Principal) -> int:
    """Undo the reviewer's latest decision, whether it was an independent (multi-reviewer) one or not."""
    with wiring.uow() as uow:
        event = uow.reviews.last_event(who.name)
        withdrawn = assignments.undo_mine(uow, who.name)
        if withdrawn and (event is None or _aware(withdrawn[1]) >= _aware(event.created_at)):
            uow.commit()
            return withdrawn[0]
        uow.rollback()
        draft_id = service.undo_last(uow, who.name)
        uow.commit()
        return draft_id


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def bulk_preview(wiring: Wiring, body: BulkRequest) -> int:
    flt = bulk.targets(body.filters().draft_filter(), body.action)
    with wiring.uow() as uow:
        _single_review_only(uow, body.dataset)
        return uow.reviews.count(flt)


def bulk_apply(wiring: Wiring, who: Principal, body: BulkRequest) -> dict[str, Any]:
    if body.action not in ("approve", "reject"):
        raise ValueError(f"bulk decisions are approve or reject, not {body.action}")
    count = bulk_preview(wiring, body)
    if body.expected is not None and count != body.expected:
        raise ValueError(f"the filter now matches {count} drafts, not the {body.expected} you saw; preview again")
    result = bulk.bulk_decide(wiring.uow, body.filters().draft_filter(), body.action, who.name, note=body.note)
    return {"planned": len(result.planned), "applied": len(result.applied),
            "failed": [{"id": i, "error": str(e)} for i, e in result.failed]}


def _single_review_only(uow: UnitOfWork, dataset: str | None) -> None:
    multi = {name: n for name, n in assignments.requirements(uow).items() if n > 1}
    if multi and (dataset is None or dataset in multi):
        names = ", ".join(f"{k} ({v})" for k, v in sorted(multi.items()))
        raise ValueError(f"bulk decisions skip independent review; datasets needing several reviewers: {names}. "
                         "Filter by another dataset.")

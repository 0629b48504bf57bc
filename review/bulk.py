"""Decisions over many drafts chosen by a filter. Each draft keeps its own version check."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from review.rules import ReviewError, sources, target_status
from review.service import clean_note, conflict, event_values
from storage.models import utcnow
from storage.repositories.reviews import DraftFilter, DraftState
from storage.uow import UnitOfWork

COMMIT_EVERY = 200  # bounds how long row locks are held on a large bulk decision


@dataclass
class BulkResult:
    planned: list[int] = field(default_factory=list)
    applied: list[int] = field(default_factory=list)
    failed: list[tuple[int, ReviewError]] = field(default_factory=list)


def targets(flt: DraftFilter, action: str) -> DraftFilter:
    """Bulk decisions default to pending drafts; an explicit status must be one the action accepts."""
    if flt.status is None:
        return dataclasses.replace(flt, status="pending")
    if flt.status not in sources(action):
        allowed = ", ".join(sorted(sources(action)))
        raise ValueError(f"cannot {action} {flt.status} drafts; {action} applies to: {allowed}")
    return flt


def bulk_decide(
    uow_factory: Callable[[], UnitOfWork], flt: DraftFilter, action: str, reviewer: str, *,
    note: str | None = None, dry_run: bool = False,
) -> BulkResult:
    """Decide every matching draft, a chunk per statement: each draft still needs the version it was
    selected at, and one that moved on meanwhile is reported as a conflict, not overwritten."""
    flt = targets(flt, action)
    note = clean_note(action, note, "drafts")
    with uow_factory() as uow:
        found = uow.reviews.states(flt)
    result = BulkResult(planned=[state.id for state in found])
    if not dry_run:
        for start in range(0, len(found), COMMIT_EVERY):
            _apply(uow_factory, found[start : start + COMMIT_EVERY], action, reviewer, note, result)
    return result


def auto_approve(uow_factory: Callable[[], UnitOfWork], flt: DraftFilter, reviewer: str, *,
                 dry_run: bool = False) -> BulkResult:
    """Approve pending drafts that no check flagged."""
    flt = dataclasses.replace(flt, status="pending", no_flags=True, flag=None)
    return bulk_decide(uow_factory, flt, "auto-approve", reviewer, dry_run=dry_run)


def _apply(uow_factory: Callable[[], UnitOfWork], part: Sequence[DraftState], action: str, reviewer: str,
           note: str | None, result: BulkResult) -> None:
    with uow_factory() as uow:
        values = {"status": target_status(action, part[0].status, part[0].id), "reviewer": reviewer,
                  "reviewed_at": utcnow(), "review_note": note}
        done = uow.reviews.update_many([(state.id, state.version) for state in part], values)
        uow.reviews.add_events([event_values(s.id, s._asdict(), values, action, note) for s in part if s.id in done])
        conflicts = [(s.id, conflict(uow, s.id, s.version)) for s in part if s.id not in done]
        uow.commit()
    result.applied.extend(s.id for s in part if s.id in done)
    result.failed.extend(conflicts)

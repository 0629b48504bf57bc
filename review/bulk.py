"""Decisions over many drafts chosen by a filter. Each draft keeps its own version check."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from review.rules import ReviewError, sources
from review.service import decide
from storage.repositories.reviews import DraftFilter
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
        raise ValueError(f"cannot {action} {flt.status} drafts; {action} applies to: {', '.join(sorted(sources(action)))}")
    return flt


def bulk_decide(
    uow_factory: Callable[[], UnitOfWork], flt: DraftFilter, action: str, reviewer: str, *,
    note: str | None = None, dry_run: bool = False,
) -> BulkResult:
    with uow_factory() as uow:
        found = uow.reviews.versions(targets(flt, action))
    result = BulkResult(planned=[draft_id for draft_id, _ in found])
    if not dry_run:
        for start in range(0, len(found), COMMIT_EVERY):
            _apply(uow_factory, found[start : start + COMMIT_EVERY], action, reviewer, note, result)
    return result


def auto_approve(uow_factory: Callable[[], UnitOfWork], flt: DraftFilter, reviewer: str, *,
                 dry_run: bool = False) -> BulkResult:
    """Approve pending drafts that no check flagged."""
    flt = dataclasses.replace(flt, status="pending", no_flags=True, flag=None)
    return bulk_decide(uow_factory, flt, "auto-approve", reviewer, dry_run=dry_run)


def _apply(uow_factory: Callable[[], UnitOfWork], part: Sequence[tuple[int, int]], action: str, reviewer: str,
           note: str | None, result: BulkResult) -> None:
    with uow_factory() as uow:
        for draft_id, version in part:
            try:
                decide(uow, draft_id, version, action, reviewer, note=note)
                result.applied.append(draft_id)
            except ReviewError as exc:  # nothing was written for this draft; the others go on
                result.failed.append((draft_id, exc))
        uow.commit()

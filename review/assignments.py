"""Several reviewers per draft: leases, independent decisions, consensus or adjudication.

A dataset may require N independent decisions per draft (``review_requirements``; absent means one, and the
plain review service decides directly). A reviewer first *claims* a draft: a lease row, refused when N
reviewers already hold or decided it, or when this reviewer decided it before (nobody sees a draft twice).
The Nth decision settles the draft through :func:`review.service.decide` when all N agree; otherwise the
draft waits for an admin in the adjudication view. Claims lock the draft row, so two claims for its last
place cannot both win (PostgreSQL; SQLite serialises writers anyway).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, or_, select

from review import service
from review.rules import IllegalTransitionError, ReviewError
from storage.models import Dataset, Draft, Record, ReviewAssignment, ReviewRequirement, utcnow
from storage.repositories.reviews import DraftRow
from storage.uow import UnitOfWork

LEASE = timedelta(minutes=10)
DECISIONS = ("approve", "reject")


class NotAssignedError(ReviewError, RuntimeError):
    """This reviewer may not decide this draft (others hold all its places, or they decided it already)."""


@dataclass(frozen=True)
class Outcome:
    draft_id: int
    decided: int  # decisions so far
    required: int
    state: str  # waiting | decided | adjudication
    version: int


def required(uow: UnitOfWork, dataset_id: int) -> int:
    found = uow.session.get(ReviewRequirement, dataset_id)
    return found.required_decisions if found else 1


def set_required(uow: UnitOfWork, dataset: str, n: int) -> None:
    if not 1 <= n <= 10:
        raise ValueError(f"required decisions must be between 1 and 10, not {n}")
    ds = uow.records.dataset(dataset)
    found = uow.session.get(ReviewRequirement, ds.id)
    if found is None:
        uow.session.add(ReviewRequirement(dataset_id=ds.id, required_decisions=n, updated_at=utcnow()))
    else:
        found.required_decisions = n


def requirements(uow: UnitOfWork) -> dict[str, int]:
    rows = uow.session.execute(select(Dataset.name, ReviewRequirement.required_decisions)
                               .join(ReviewRequirement, ReviewRequirement.dataset_id == Dataset.id))
    return {name: n for name, n in rows}


def claim(uow: UnitOfWork, draft_id: int, reviewer: str, n: int, now: datetime | None = None) -> bool:
    """Take (or renew) this reviewer's lease on a draft; False when it is not theirs to take."""
    now = now or utcnow()
    # Lock the draft (a claim for its last place waits for, then sees, any other); one being claimed or decided
    # right now is skipped, and one decided since the caller read it is not pending any more.
    status = uow.session.scalar(select(Draft.status).where(Draft.id == draft_id)
                                .with_for_update(skip_locked=True))
    if status != "pending":
        return False
    mine = _mine(uow, draft_id, reviewer)
    if mine is not None:
        if mine.decision is not None:
            return False
        mine.leased_until = now + LEASE
        return True
    taken = uow.session.scalar(select(func.count()).select_from(ReviewAssignment).where(
        ReviewAssignment.draft_id == draft_id,
        or_(ReviewAssignment.decision.is_not(None), ReviewAssignment.leased_until > now))) or 0
    if taken >= n:
        return False
    uow.session.add(ReviewAssignment(draft_id=draft_id, reviewer=reviewer, leased_until=now + LEASE, created_at=now))
    uow.session.flush()
    return True


def open_to(uow: UnitOfWork, draft_ids: Sequence[int], reviewer: str, required: dict[int, int],
            now: datetime | None = None) -> set[int]:
    """Of these drafts (id -> places), those this reviewer might claim: one query, so the desk tries to claim
    only likely ones instead of queueing on drafts other reviewers hold."""
    now = now or utcnow()
    taken: dict[int, int] = {}
    mine: set[int] = set()
    stmt = select(ReviewAssignment.draft_id, ReviewAssignment.reviewer, ReviewAssignment.decision,
                  ReviewAssignment.leased_until).where(ReviewAssignment.draft_id.in_(list(draft_ids)))
    for draft_id, who, decision, until in uow.session.execute(stmt):
        if who == reviewer:
            if decision is not None:
                mine.add(draft_id)
        elif decision is not None or (until is not None and _aware(until) > now):
            taken[draft_id] = taken.get(draft_id, 0) + 1
    return {i for i in draft_ids if i not in mine and taken.get(i, 0) < required.get(i, 1)}


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def decide(uow: UnitOfWork, row: DraftRow, reviewer: str, action: str, note: str | None, n: int) -> Outcome:
    """Record one reviewer's independent decision; settle the draft when N agree."""
    draft_id = row.draft.id
    if action not in DECISIONS:
        raise IllegalTransitionError(f"with {n} reviewers per draft, decide with approve or reject, not {action}")
    note = service.clean_note(action, note, f"draft {draft_id}")
    if row.draft.status != "pending":
        raise IllegalTransitionError(f"draft {draft_id} is {row.draft.status} already")
    if not claim(uow, draft_id, reviewer, n):
        raise NotAssignedError(f"draft {draft_id} is not yours to decide: {n} reviewers hold or decided it, "
                               "or you decided it already")
    mine = _mine(uow, draft_id, reviewer)
    assert mine is not None  # claimed just above
    mine.decision, mine.note, mine.decided_at, mine.leased_until = action, note, utcnow(), None
    uow.session.flush()
    decided = decisions(uow, draft_id)
    if len(decided) < n:
        return Outcome(draft_id, len(decided), n, "waiting", row.draft.version)
    if len({d.decision for d in decided}) > 1:
        return Outcome(draft_id, len(decided), n, "adjudication", row.draft.version)
    names = "+".join(sorted(d.reviewer for d in decided))
    notes = "; ".join(f"{d.reviewer}: {d.note}" for d in decided if d.note) or None
    version = service.decide(uow, draft_id, row.draft.version, action, f"consensus:{names}"[:200], note=notes,
                             row=row)
    return Outcome(draft_id, len(decided), n, "decided", version)


def release(uow: UnitOfWork, draft_id: int, reviewer: str) -> None:
    """Give up an undecided lease (the reviewer moved on, or decided a single-review draft directly)."""
    mine = _mine(uow, draft_id, reviewer)
    if mine is not None and mine.decision is None:
        uow.session.delete(mine)


@dataclass(frozen=True)
class Vote:
    reviewer: str
    decision: str
    note: str | None


def decisions(uow: UnitOfWork, draft_id: int) -> list[Vote]:
    """The independent decisions on a draft so far (plain values: readable after the unit of work ends)."""
    stmt = (select(ReviewAssignment.reviewer, ReviewAssignment.decision, ReviewAssignment.note)
            .where(ReviewAssignment.draft_id == draft_id, ReviewAssignment.decision.is_not(None))
            .order_by(ReviewAssignment.id))
    return [Vote(reviewer, decision or "", note) for reviewer, decision, note in uow.session.execute(stmt)]


def undo_mine(uow: UnitOfWork, reviewer: str) -> tuple[int, datetime] | None:
    """Withdraw this reviewer's latest decision on a draft that is still pending; (draft id, when decided)."""
    latest = uow.session.scalars(select(ReviewAssignment).join(Draft, Draft.id == ReviewAssignment.draft_id).where(
        ReviewAssignment.reviewer == reviewer, ReviewAssignment.decision.is_not(None), Draft.status == "pending")
        .order_by(ReviewAssignment.decided_at.desc()).limit(1)).first()
    if latest is None:
        return None
    when = latest.decided_at
    latest.decision, latest.note, latest.decided_at, latest.leased_until = None, None, None, utcnow() + LEASE
    assert when is not None  # a decided assignment has its time
    return latest.draft_id, when


def adjudication_queue(uow: UnitOfWork, limit: int = 100) -> list[tuple[int, str, list[Vote]]]:
    """Pending drafts whose required decisions are in and disagree: (draft id, dataset, decisions)."""
    stmt = (select(ReviewAssignment.draft_id, Dataset.name, func.coalesce(ReviewRequirement.required_decisions, 1))
            .join(Draft, Draft.id == ReviewAssignment.draft_id).join(Record, Record.id == Draft.record_id)
            .join(Dataset, Dataset.id == Record.dataset_id)
            .outerjoin(ReviewRequirement, ReviewRequirement.dataset_id == Dataset.id)
            .where(Draft.status == "pending", Draft.is_current.is_(True), ReviewAssignment.decision.is_not(None))
            .group_by(ReviewAssignment.draft_id, Dataset.name, ReviewRequirement.required_decisions)
            .having(func.count(func.distinct(ReviewAssignment.decision)) > 1)
            .order_by(ReviewAssignment.draft_id).limit(limit))
    found = []
    for draft_id, dataset, n in uow.session.execute(stmt).all():
        decided = decisions(uow, draft_id)
        if len(decided) >= n:
            found.append((draft_id, dataset, decided))
    return found


def pair_decisions(uow: UnitOfWork, dataset: str | None = None) -> dict[int, dict[str, str]]:
    """draft id -> {reviewer: decision}, for drafts with at least one independent decision."""
    stmt = (select(ReviewAssignment.draft_id, ReviewAssignment.reviewer, ReviewAssignment.decision)
            .where(ReviewAssignment.decision.is_not(None)))
    if dataset is not None:
        stmt = (stmt.join(Draft, Draft.id == ReviewAssignment.draft_id).join(Record, Record.id == Draft.record_id)
                .join(Dataset, Dataset.id == Record.dataset_id).where(Dataset.name == dataset))
    items: dict[int, dict[str, str]] = {}
    for draft_id, reviewer, decision in uow.session.execute(stmt):
        items.setdefault(draft_id, {})[reviewer] = decision or ""
    return items


def _mine(uow: UnitOfWork, draft_id: int, reviewer: str) -> ReviewAssignment | None:
    return uow.session.scalar(select(ReviewAssignment).where(
        ReviewAssignment.draft_id == draft_id, ReviewAssignment.reviewer == reviewer))


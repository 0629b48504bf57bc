"""Policies: a judge's scores and the draft's check flags -> approve, reject, or leave for people.

Rule (in this order): no usable judgement -> left for people; any criterion at or below ``reject_max`` ->
rejected, the judge's reasons for those criteria are the review note (so ``rebuild`` regenerates with them);
overall at or above ``approve_min`` (and, with ``require_no_flags``, no check flag) -> approved; otherwise left
for people. Every decision goes through the review service as reviewer ``policy:NAME@HASH`` (HASH names the
exact thresholds), so it is in the audit trail and ``review reset`` undoes it like any other.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from review import service
from review.rules import ReviewError
from storage.models import utcnow
from storage.repositories.reviews import DraftFilter
from storage.uow import UnitOfWork

POLICY_PREFIX = "policy:"


@dataclass(frozen=True)
class PolicySpec:
    name: str
    approve_min: float
    reject_max: float
    require_no_flags: bool = False
    rubric_name: str | None = None  # only judgements under this rubric count (None: the newest of any)

    def __post_init__(self) -> None:
        if not 1 <= self.reject_max < self.approve_min <= 5:
            raise ValueError(f"policy {self.name!r}: need 1 <= --reject-max < --approve-min <= 5 "
                             f"(got reject-max {self.reject_max}, approve-min {self.approve_min})")

    @property
    def hash(self) -> str:
        body = {"approve_min": self.approve_min, "reject_max": self.reject_max,
                "require_no_flags": self.require_no_flags, "rubric_name": self.rubric_name}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def reviewer(self) -> str:
        return f"{POLICY_PREFIX}{self.name}@{self.hash}"

    @classmethod
    def of(cls, row: Any) -> "PolicySpec":
        return cls(row.name, row.approve_min, row.reject_max, row.require_no_flags, row.rubric_name)

    def describe(self) -> str:
        flags = ", no check flag" if self.require_no_flags else ""
        return (f"approve: overall >= {self.approve_min:g}{flags}; reject: any criterion <= {self.reject_max:g}; "
                "else left for people")


@dataclass(frozen=True)
class Decision:
    action: str | None  # approve | reject | None (left for people)
    note: str | None = None
    why: str = ""


def decide(spec: PolicySpec, scores: dict[str, dict[str, Any]] | None, overall: float | None,
           flags: Sequence[str]) -> Decision:
    if not scores or overall is None:
        return Decision(None, why="no usable judgement")
    low = {k: v for k, v in scores.items() if v["score"] <= spec.reject_max}
    if low:
        note = "; ".join(f"{k} {v['score']}/5: {v['reason']}" for k, v in sorted(low.items()))
        return Decision("reject", note=f"judge: {note}", why=f"{len(low)} criterion(s) <= {spec.reject_max:g}")
    if overall >= spec.approve_min and not (spec.require_no_flags and flags):
        return Decision("approve", why=f"overall {overall:g} >= {spec.approve_min:g}")
    why = "check flags raised" if overall >= spec.approve_min else f"overall {overall:g} < {spec.approve_min:g}"
    return Decision(None, why=why)


def load_policy(uow: UnitOfWork, name: str) -> PolicySpec:
    row = uow.policies.get(name)
    if row is None:
        known = ", ".join(p.name for p in uow.policies.all()) or "none yet"
        raise LookupError(f"No policy named {name!r} (known: {known}); create one with: "
                          f"reasongen policy set {name} --approve-min 4 --reject-max 2")
    return PolicySpec.of(row)


def save_policy(uow: UnitOfWork, spec: PolicySpec) -> None:
    uow.policies.put(spec.name, dict(approve_min=spec.approve_min, reject_max=spec.reject_max,
                                     require_no_flags=spec.require_no_flags, rubric_name=spec.rubric_name,
                                     hash=spec.hash))


@dataclass
class PolicyResult:
    approved: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    left: list[int] = field(default_factory=list)
    unjudged: list[int] = field(default_factory=list)
    conflicts: list[tuple[int, str]] = field(default_factory=list)

    def add(self, other: "PolicyResult") -> None:
        for name in ("approved", "rejected", "left", "unjudged", "conflicts"):
            getattr(self, name).extend(getattr(other, name))

    def counts(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in ("approved", "rejected", "left", "unjudged", "conflicts")}


def apply_to_drafts(uow: UnitOfWork, spec: PolicySpec, draft_ids: Sequence[int], *, dry_run: bool = False
                    ) -> PolicyResult:
    """Decide the pending drafts among ``draft_ids`` in this transaction (the caller commits)."""
    result = PolicyResult()
    rows = uow.reviews.find(DraftFilter(ids=tuple(draft_ids), status="pending")) if draft_ids else []
    judged = uow.judgements.latest_for([r.draft.id for r in rows], spec.rubric_name)
    approvals = []
    for row in rows:
        j = judged.get(row.draft.id)
        if j is None:
            result.unjudged.append(row.draft.id)
            continue
        decision = decide(spec, j.scores, j.overall, row.draft.flags or [])
        if decision.action is None:
            result.left.append(row.draft.id)
        elif decision.action == "approve":
            approvals.append(row)
        elif dry_run:
            result.rejected.append(row.draft.id)
        else:  # each rejection has its own note (the judge's reasons): one versioned update each
            try:
                service.decide(uow, row.draft.id, row.draft.version, "reject", spec.reviewer, note=decision.note,
                               row=row)
                result.rejected.append(row.draft.id)
            except ReviewError as exc:
                result.conflicts.append((row.draft.id, str(exc)))
    _approve_all(uow, spec, approvals, result, dry_run)
    return result


def _approve_all(uow: UnitOfWork, spec: PolicySpec, rows: list[Any], result: PolicyResult, dry_run: bool) -> None:
    """Approvals in one versioned statement and one insert of audit events (a draft changed meanwhile is a
    conflict, as in review.bulk)."""
    if dry_run or not rows:
        result.approved.extend(r.draft.id for r in rows)
        return
    values = {"status": "approved", "reviewer": spec.reviewer, "reviewed_at": utcnow(), "review_note": None}
    done = uow.reviews.update_many([(r.draft.id, r.draft.version) for r in rows], values)
    uow.reviews.add_events([service.event_values(r.draft.id, service.snapshot(r), values, "approve", None)
                            for r in rows if r.draft.id in done])
    result.approved.extend(r.draft.id for r in rows if r.draft.id in done)
    result.conflicts.extend((r.draft.id, "changed meanwhile") for r in rows if r.draft.id not in done)


def apply_policy(uow_factory: Callable[[], UnitOfWork], name: str, flt: DraftFilter, *, dry_run: bool = False,
                 page: int = 500) -> PolicyResult:
    """Decide every pending, judged draft matching ``flt``, a page per transaction."""
    with uow_factory() as uow:
        spec = load_policy(uow, name)
        ids = [s.id for s in uow.reviews.states(_pending(flt))]
    total = PolicyResult()
    for start in range(0, len(ids), page):
        with uow_factory() as uow:
            total.add(apply_to_drafts(uow, spec, ids[start : start + page], dry_run=dry_run))
            if not dry_run:
                uow.commit()
    return total


def _pending(flt: DraftFilter) -> DraftFilter:
    import dataclasses

    return dataclasses.replace(flt, status="pending")


def is_policy(reviewer: str | None) -> bool:
    return bool(reviewer) and str(reviewer).startswith(POLICY_PREFIX)


def policy_name_of(reviewer: str) -> str:
    return reviewer[len(POLICY_PREFIX):].split("@", 1)[0]

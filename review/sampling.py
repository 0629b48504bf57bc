"""Spot checks: a reproducible sample of drafts a policy decided, for a person to confirm or overturn.

The sample is drawn by a hash of each draft id with a seed (the same seed, the same drafts, however the table
grows), optionally stratified: an equal share per (lang, field, ...) stratum, so a rare language is checked too.
A person's verdict is recorded as their own decision: agreeing with an approval is a reset and an approve by
the person (two audit events), so ``review agreement`` sees that a person decided it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import select

from review.policy import POLICY_PREFIX
from review.service import decide
from storage.models import Draft, Record
from storage.uow import UnitOfWork

STRATA = ("lang", "field", "uniqueness")


def _rank(draft_id: int, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{draft_id}".encode()).hexdigest()


def sample_ids(uow: UnitOfWork, n: int, *, stratify: Sequence[str] = (), seed: int = 0,
               dataset_id: int | None = None, policy: str | None = None) -> list[int]:
    """Up to ``n`` current drafts decided by a policy (and not since by a person), reproducibly."""
    bad = [s for s in stratify if s not in STRATA]
    if bad:
        raise ValueError(f"cannot stratify by {', '.join(bad)}; use: {', '.join(STRATA)}")
    prefix = f"{POLICY_PREFIX}{policy}@" if policy else POLICY_PREFIX
    stmt = (select(Draft.id, *(getattr(Record, s) for s in stratify)).join(Record, Record.id == Draft.record_id)
            .where(Draft.is_current.is_(True), Draft.status.in_(("approved", "rejected")),
                   Draft.reviewer.startswith(prefix, autoescape=True)))
    if dataset_id is not None:
        stmt = stmt.where(Record.dataset_id == dataset_id)
    groups: dict[tuple[Any, ...], list[int]] = {}
    for row in uow.session.execute(stmt):
        groups.setdefault(tuple(row[1:]), []).append(int(row[0]))
    for ids in groups.values():
        ids.sort(key=lambda i: _rank(i, seed))
    picked: list[int] = []
    keys = sorted(groups, key=lambda k: tuple(str(v) for v in k))
    while len(picked) < n and any(groups[k] for k in keys):  # round robin: equal shares per stratum
        for k in keys:
            if groups[k] and len(picked) < n:
                picked.append(groups[k].pop(0))
    return picked


def verdict(uow: UnitOfWork, draft_id: int, version: int, action: str, reviewer: str,
            note: str | None = None) -> int:
    """Record a person's approve/reject on a decided draft, also when it agrees with the decision already there."""
    row = uow.reviews.load(draft_id)
    target = {"approve": "approved", "reject": "rejected"}[action]
    if row is not None and row.draft.status == target:
        version = decide(uow, draft_id, version, "reset", reviewer, note="spot check")
    return decide(uow, draft_id, version, action, reviewer, note=note)


def sample_loop(uow_factory: Callable[[], UnitOfWork], ids: Sequence[int], reviewer: str, term: Any) -> dict[str, int]:
    """``review next --sample``: each sampled draft once; a agree-approve, r reject (note), s skip, q quit."""
    from rich.text import Text

    from review.interactive import _choose
    from review.render import draft_view
    from review.rules import ReviewError

    done: dict[str, int] = {}
    for i, draft_id in enumerate(ids):
        with uow_factory() as uow:
            row = uow.reviews.load(draft_id)
        if row is None:
            continue
        term.console.print(draft_view(row, term.console.width))
        term.console.print(f"spot check {i + 1}/{len(ids)}: the policy said [bold]{row.draft.status}[/] "
                           f"({row.draft.reviewer}) · [bold]a[/]pprove [bold]r[/]eject [bold]s[/]kip [bold]q[/]uit",
                           highlight=False)
        action = _choose(term)
        if action == "quit":
            break
        if action not in ("approve", "reject"):
            done["skip"] = done.get("skip", 0) + 1
            continue
        note = None
        if action == "reject":
            note = term.read_line("Why is it rejected? ") or ""
            if not note.strip():
                term.console.print("Not rejected: a rejection needs a note.")
                continue
        try:
            with uow_factory() as uow:
                verdict(uow, draft_id, row.draft.version, action, reviewer, note)
                uow.commit()
        except ReviewError as exc:
            term.console.print(Text(str(exc), style="red"))
            continue
        done[action] = done.get(action, 0) + 1
    return done

"""`reasongen review next`: pending drafts one at a time, one key per decision.

Each decision uses the version shown on screen, so a draft someone else decided meanwhile gives a
conflict message and the loop simply moves on with fresh data.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console
from rich.text import Text

from review.editor import keep
from review.render import draft_view
from review.rules import ReviewError
from review.service import decide
from storage.repositories.reviews import DraftFilter, DraftRow
from storage.uow import UnitOfWork

KEYS = {"a": "approve", "r": "reject", "e": "edit", "s": "skip", "q": "quit"}
PROMPT = "[bold]a[/]pprove  [bold]r[/]eject  [bold]e[/]dit  [bold]s[/]kip  [bold]q[/]uit"


@dataclass
class Terminal:
    """How the loop talks to the reviewer (swappable in tests)."""

    console: Console
    read_key: Callable[[], str]
    read_line: Callable[[str], str | None]
    # Opens the editor on a draft; returns the changed fields ({} or None: nothing to apply).
    edit: Callable[[DraftRow], dict[str, str] | None]


def review_loop(uow_factory: Callable[[], UnitOfWork], flt: DraftFilter, reviewer: str, term: Terminal) -> Counter[str]:
    flt = dataclasses.replace(flt, status="pending")
    done: Counter[str] = Counter()
    skipped: list[int] = []
    while True:
        row, remaining = _next(uow_factory, flt, skipped)
        if row is None:
            term.console.print(f"No pending drafts left to review ({len(skipped)} skipped).")
            return done
        term.console.print(draft_view(row, term.console.width))
        term.console.print(f"{remaining} pending left · {PROMPT}", highlight=False)
        action = _choose(term)
        if action == "quit":
            return done
        if action == "skip":
            skipped.append(row.draft.id)
            done[action] += 1
        elif _act(uow_factory, row, action, reviewer, term):
            done[action] += 1


def _choose(term: Terminal) -> str:
    while (action := KEYS.get(term.read_key())) is None:  # end of input reads as "q", so this ends
        term.console.print(f"unknown key; {PROMPT}", highlight=False)
    return action


def _next(uow_factory: Callable[[], UnitOfWork], flt: DraftFilter, skipped: list[int]) -> tuple[DraftRow | None, int]:
    with uow_factory() as uow:
        rows = uow.reviews.find(flt, limit=1, exclude=skipped)
        return (rows[0] if rows else None), uow.reviews.count(flt, exclude=skipped)


def _act(uow_factory: Callable[[], UnitOfWork], row: DraftRow, action: str, reviewer: str, term: Terminal) -> bool:
    note, changes = None, None
    if action == "reject":
        note = term.read_line("Why is it rejected? (the note guides regeneration; empty cancels) ")
        if not (note or "").strip():
            term.console.print("Not rejected: a rejection needs a note.")
            return False
    if action == "edit":
        changes = term.edit(row)
        if not changes:
            term.console.print("Edit aborted; draft unchanged.")
            return False
    try:
        with uow_factory() as uow:
            version = decide(uow, row.draft.id, row.draft.version, action, reviewer, note=note, changes=changes)
            uow.commit()
    except ReviewError as exc:
        term.console.print(Text(str(exc), style="red"))
        if changes:
            term.console.print(f"Your edit is kept in {keep(row.draft.id, changes, row.draft.version)}")
        return False
    term.console.print(f"draft {row.draft.id}: {action} done (version {version}).")
    return True

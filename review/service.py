"""One review decision on one draft: validated first, then versioned updates, each with its audit event.

Callers pass the version they looked at; if the draft moved on since, nothing is written and a
:class:`ConflictError` says who changed it. Everything is checked before the first write, so the only
failure after a write is impossible (the first update holds the row), and a caller may catch a
:class:`ReviewError` and go on in the same transaction. Nothing here commits: the caller does.
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from typing import Any

from review.rules import (
    EDITABLE_FIELDS,
    ConflictError,
    DraftNotFoundError,
    IllegalTransitionError,
    InvalidEditError,
    ReviewError,
    target_status,
)
from storage.models import ReviewEvent, utcnow
from storage.repositories.reviews import DraftRow
from storage.uow import UnitOfWork

# What an audit event records before/after (only the keys that changed).
AUDITED = ("status", "edited", "review_note", *EDITABLE_FIELDS)


def reviewer_name(explicit: str | None = None, configured: str | None = None) -> str:
    """--reviewer, else Settings.reviewer, else the login name."""
    if explicit or configured:
        return (explicit or configured or "").strip()
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in some containers
        return "unknown"


def approve(uow: UnitOfWork, draft_id: int, version: int, reviewer: str, note: str | None = None) -> int:
    return decide(uow, draft_id, version, "approve", reviewer, note=note)


def reject(uow: UnitOfWork, draft_id: int, version: int, reviewer: str, note: str) -> int:
    return decide(uow, draft_id, version, "reject", reviewer, note=note)


def edit(uow: UnitOfWork, draft_id: int, version: int, reviewer: str, changes: Mapping[str, Any]) -> int:
    return decide(uow, draft_id, version, "edit", reviewer, changes=changes)


def reset(uow: UnitOfWork, draft_id: int, version: int, reviewer: str, note: str | None = None) -> int:
    return decide(uow, draft_id, version, "reset", reviewer, note=note)


def decide(
    uow: UnitOfWork, draft_id: int, version: int, action: str, reviewer: str, *,
    note: str | None = None, changes: Mapping[str, Any] | None = None, row: DraftRow | None = None,
) -> int:
    """Apply text ``changes`` (an edit), then ``action``; return the draft's new version.

    Changed text with a status action is two events (edit, then the action), so nothing a reviewer
    typed is dropped and the draft is marked ``edited``. ``row`` may be the draft read earlier in
    this transaction (saves a query); the versioned update still catches any change since.
    """
    row = check_version(row, version) if row is not None else load(uow, draft_id, version)
    if not row.draft.is_current:
        raise _superseded(draft_id)
    state = snapshot(row)
    note = clean_note(action, note, f"draft {draft_id}")
    edits = validated_edits(row, changes or {})
    if action == "edit" and not edits:
        raise InvalidEditError(f"edit of draft {draft_id} changes nothing")
    if action != "edit":
        target_status(action, state["status"], draft_id)  # refuse before anything is written
    steps = ([("edit", edits)] if edits else []) + ([(action, {})] if action != "edit" else [])
    for i, (step, values) in enumerate(steps):
        state = _write(uow, draft_id, state, step, values, reviewer, note if i == len(steps) - 1 else None)
    new_version: int = state["version"]
    return new_version


def load(uow: UnitOfWork, draft_id: int, version: int | None = None) -> DraftRow:
    """The draft now; a conflict if it is no longer at ``version``."""
    row = uow.reviews.load(draft_id)
    if row is None:
        raise DraftNotFoundError(draft_id)
    return check_version(row, version)


def check_version(row: DraftRow, version: int | None) -> DraftRow:
    d = row.draft
    if version is not None and d.version != version:
        raise ConflictError(d.id, version, d.version, d.reviewer, d.reviewed_at)
    return row


def history(uow: UnitOfWork, draft_id: int) -> list[ReviewEvent]:
    load(uow, draft_id)
    return uow.reviews.events(draft_id)


def snapshot(row: DraftRow) -> dict[str, Any]:
    return {key: getattr(row.draft, key) for key in (*AUDITED, "version")}


def validated_edits(row: DraftRow, changes: Mapping[str, Any]) -> dict[str, str]:
    """The fields that really change, stripped; refuses unknown fields and empty required text."""
    edits: dict[str, str] = {}
    for name, value in changes.items():
        if name not in EDITABLE_FIELDS:
            raise InvalidEditError(f"{name!r} cannot be edited; editable fields: {', '.join(EDITABLE_FIELDS)}")
        if not isinstance(value, str):
            raise InvalidEditError(f"{name} must be text, not {type(value).__name__}")
        if not value.strip() and name in required_fields(row):
            raise InvalidEditError(f"{name} of draft {row.draft.id} must not be empty")
        if value.strip() != (getattr(row.draft, name) or "").strip():
            edits[name] = value.strip()
    return edits


def required_fields(row: DraftRow) -> tuple[str, ...]:
    # An English record without input has nothing to transform; every other draft needs all three.
    has_input = row.record.lang != "en" or bool((row.record.input or "").strip())
    return EDITABLE_FIELDS if has_input else ("reasoning", "response")


def clean_note(action: str, note: str | None, what: str) -> str | None:
    note = (note or "").strip() or None
    if action == "reject" and note is None:
        raise InvalidEditError(f"rejecting {what} needs a note saying why (it guides regeneration)")
    return note


def _write(uow: UnitOfWork, draft_id: int, state: dict[str, Any], action: str, edits: dict[str, str],
           reviewer: str, note: str | None) -> dict[str, Any]:
    target = target_status(action, state["status"], draft_id)
    values: dict[str, Any] = {"status": target, "reviewer": reviewer, "reviewed_at": utcnow(), **edits}
    if edits:
        values["edited"] = True
    if action != "edit" or note:
        values["review_note"] = note  # a decision's note replaces the last one; history keeps both
    if not uow.reviews.update_versioned(draft_id, state["version"], values):
        raise conflict(uow, draft_id, state["version"])
    uow.reviews.add_event(**event_values(draft_id, state, values, action, note))
    return {**state, **values, "version": state["version"] + 1}


def conflict(uow: UnitOfWork, draft_id: int, expected: int) -> ReviewError:
    """Why a versioned update found nothing to update (the draft reloaded to say by whom)."""
    row = uow.reviews.load(draft_id)
    if row is None:
        return DraftNotFoundError(draft_id)
    if not row.draft.is_current:
        return _superseded(draft_id)
    return ConflictError(draft_id, expected, row.draft.version, row.draft.reviewer, row.draft.reviewed_at)


def _superseded(draft_id: int) -> IllegalTransitionError:
    return IllegalTransitionError(f"draft {draft_id} was replaced by a newer draft of its record; "
                                  "review the current one (reasongen review list)")


def event_values(draft_id: int, state: Mapping[str, Any], values: Mapping[str, Any], action: str,
                 note: str | None) -> dict[str, Any]:
    """The audit event for one applied change: only the audited keys that changed, before and after."""
    changed = [k for k in AUDITED if k in values and values[k] != state[k]]
    return dict(
        draft_id=draft_id, reviewer=values["reviewer"], action=action, from_status=state["status"],
        to_status=values["status"], note=note, before={k: state[k] for k in changed},
        after={k: values[k] for k in changed}, created_at=values["reviewed_at"],
    )


UNDO_NOTE = "undo"


def undo_last(uow: UnitOfWork, reviewer: str) -> int:
    """Take back this reviewer's latest change (approve, reject or edit) if nobody changed the draft since;
    returns the draft id. The undo is itself a change in the history (note "undo"), never an erasure."""
    event = uow.reviews.last_event(reviewer)
    if event is None or event.note == UNDO_NOTE or event.action not in ("approve", "reject", "edit"):
        raise IllegalTransitionError("nothing to undo: your last change was already undone, or there is none")
    row = load(uow, event.draft_id)
    if uow.reviews.events(event.draft_id)[-1].id != event.id:
        raise IllegalTransitionError(f"cannot undo: draft {event.draft_id} changed after your decision")
    version = row.draft.version
    if event.action == "edit":
        decide(uow, event.draft_id, version, "edit", reviewer, note=UNDO_NOTE, changes=_text_before(event), row=row)
    elif event.from_status == "pending":
        decide(uow, event.draft_id, version, "reset", reviewer, note=UNDO_NOTE, row=row)
    else:  # back to the earlier decision (approve <-> reject)
        action = "approve" if event.from_status == "approved" else "reject"
        decide(uow, event.draft_id, version, action, reviewer, note=UNDO_NOTE, row=row)
    return event.draft_id


def _text_before(event: ReviewEvent) -> dict[str, Any]:
    return {k: v for k, v in (event.before or {}).items() if k in EDITABLE_FIELDS}

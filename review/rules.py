"""Review statuses, the legal transitions between them, and the errors a review change can raise."""

from __future__ import annotations

from datetime import datetime

STATUSES = ("pending", "approved", "rejected", "failed")
EDITABLE_FIELDS = ("transformed_input", "reasoning", "response")

# action -> (statuses it may start from, status it leads to; None keeps the status).
# A failed draft has no usable text: it is regenerated, never reviewed.
TRANSITIONS: dict[str, tuple[frozenset[str], str | None]] = {
    "approve": (frozenset({"pending", "rejected"}), "approved"),
    "auto-approve": (frozenset({"pending"}), "approved"),
    "reject": (frozenset({"pending", "approved"}), "rejected"),
    "reset": (frozenset({"approved", "rejected"}), "pending"),
    "edit": (frozenset({"pending", "approved", "rejected"}), None),
}


class ReviewError(Exception):
    """A change that cannot be applied; the message says why and what to do."""


class DraftNotFoundError(ReviewError, LookupError):
    def __init__(self, draft_id: int):
        super().__init__(f"no draft {draft_id}; list drafts with: reasongen review list")


class IllegalTransitionError(ReviewError, ValueError):
    pass


class InvalidEditError(ReviewError, ValueError):
    pass


class ConflictError(ReviewError, RuntimeError):
    """The draft changed after the reviewer loaded it; nothing was written."""

    def __init__(self, draft_id: int, expected: int, found: int, by: str | None, at: datetime | None):
        when = f" at {at:%Y-%m-%d %H:%M:%S}" if at else ""
        super().__init__(
            f"draft {draft_id} changed since you loaded it (version {expected} -> {found} by {by or 'someone'}{when}); "
            f"reload with reasongen review show {draft_id}"
        )
        self.draft_id, self.expected, self.found = draft_id, expected, found


def sources(action: str) -> frozenset[str]:
    if action not in TRANSITIONS:
        raise ValueError(f"unknown review action {action!r}; use one of: {', '.join(TRANSITIONS)}")
    return TRANSITIONS[action][0]


def target_status(action: str, current: str, draft_id: int) -> str:
    """The status ``action`` leads to from ``current``, or a clear refusal."""
    if current not in sources(action):
        raise IllegalTransitionError(f"cannot {action} draft {draft_id}: {_why(action, current)}")
    return TRANSITIONS[action][1] or current


_PAST = {"approve": "approved", "auto-approve": "auto-approved", "reject": "rejected", "reset": "reset",
         "edit": "edited"}


def _why(action: str, current: str) -> str:
    if current == "failed":
        return "its generation failed; regenerate it instead"
    if TRANSITIONS[action][1] == current:
        return f"it is already {current}"
    return f"it is {current} (only {', '.join(sorted(sources(action)))} drafts can be {_PAST[action]})"

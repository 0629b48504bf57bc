"""Plain-data views of drafts and review events, for --json output, exports and diffs."""

from __future__ import annotations

import difflib
from typing import Any

from generation.restructure import restructure
from storage.models import ReviewEvent
from storage.repositories.reviews import DraftRow


def draft_dict(row: DraftRow) -> dict[str, Any]:
    d, r = row.draft, row.record
    view = restructure(r)
    return {
        "id": d.id, "version": d.version, "status": d.status, "edited": d.edited, "flags": list(d.flags or []),
        "is_fake": d.is_fake, "is_current": d.is_current, "review_note": d.review_note, "reviewer": d.reviewer,
        "reviewed_at": d.reviewed_at, "model": d.model, "template": d.template_name, "error": d.error,
        "record": {"id": r.id, "dataset": row.dataset, "key": r.key, "lang": r.lang, "field": r.field,
                   "uniqueness": r.uniqueness, "instruction": r.instruction, "input": r.input, "output": r.output},
        "restructured": {"instruction": view.instruction, "input": view.input},
        "transformed_input": d.transformed_input, "reasoning": d.reasoning, "response": d.response,
    }


def event_dict(event: ReviewEvent) -> dict[str, Any]:
    return {
        "id": event.id, "draft_id": event.draft_id, "created_at": event.created_at, "reviewer": event.reviewer,
        "action": event.action, "from_status": event.from_status, "to_status": event.to_status,
        "note": event.note, "before": event.before, "after": event.after,
    }


def field_diff(name: str, before: Any, after: Any) -> str:
    """A unified diff of one field's text (or 'old -> new' for short values)."""
    texts = isinstance(before, str) and isinstance(after, str)
    if not texts or ("\n" not in before + after and len(before + after) < 60):
        return f"{name}: {before!r} -> {after!r}"
    lines = difflib.unified_diff(before.splitlines(), after.splitlines(), f"{name} (before)", f"{name} (after)",
                                 lineterm="")
    return "\n".join(lines)

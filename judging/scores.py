"""Reading a judge's reply: one JSON object, criterion -> {score 1-5, reason}. Anything else is a failure
with the reason named (never a default score, so a broken judge can never approve a draft)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from generation.parse import first_json_object
from judging.criteria import CRITERIA, SCORE_MAX, SCORE_MIN

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)

SCHEMA_NAME = "reasongen_judgement"


class ScoreError(ValueError):
    """The judge's reply cannot be read as scores for the criteria asked."""


def response_schema() -> dict[str, Any]:
    """Structured output for every criterion (those that do not apply come back with a null score)."""
    item = {"type": "object", "properties": {"score": {"type": ["integer", "null"]}, "reason": {"type": "string"}},
            "required": ["score", "reason"], "additionalProperties": False}
    return {"type": "object", "properties": {name: item for name in CRITERIA}, "required": list(CRITERIA),
            "additionalProperties": False}


def load_object(text: str, *, embedded: bool = False) -> dict[str, Any]:
    """The reply as a JSON object (bare or fenced; with ``embedded``, the first object inside prose, as a local
    model may write); ScoreError when there is none."""
    fenced = _FENCE.search(text or "")
    try:
        data = json.loads(fenced.group(1) if fenced else (text or ""))
    except ValueError as exc:
        found = first_json_object(text or "") if embedded else None
        if found is None:
            raise ScoreError(f"the judge's reply is not valid JSON ({exc})") from None
        data = found
    if not isinstance(data, dict):
        raise ScoreError("the judge's reply is not a JSON object")
    return data


def parse_scores(text: str, criteria: Sequence[str], *, embedded: bool = False) -> dict[str, dict[str, Any]]:
    """criterion -> {"score": int, "reason": str} for every criterion asked; ScoreError naming the first problem."""
    data = load_object(text, embedded=embedded)
    out: dict[str, dict[str, Any]] = {}
    for name in criteria:
        item = data.get(name)
        if not isinstance(item, dict):
            raise ScoreError(f"criterion {name!r} is missing from the judge's reply")
        score, reason = item.get("score"), item.get("reason")
        if isinstance(score, bool) or not isinstance(score, (int, float)) or int(score) != score:
            raise ScoreError(f"criterion {name!r}: score {score!r} is not an integer")
        if not SCORE_MIN <= int(score) <= SCORE_MAX:
            raise ScoreError(f"criterion {name!r}: score {score} is out of range {SCORE_MIN}-{SCORE_MAX}")
        if not isinstance(reason, str) or not reason.strip():
            raise ScoreError(f"criterion {name!r}: no reason given")
        out[name] = {"score": int(score), "reason": " ".join(reason.split())[:500]}
    return out

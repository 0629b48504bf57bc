"""What the loopback test server answers to a judge request (reasongen.testing.completions calls this).

A request is a judge's when its response schema is the judgement schema or its system prompt opens like the
built-in rubric. Every criterion listed under "Criteria:" gets 4 unless a marker in the prompt says otherwise:
``[[judge:score=N]]`` (any integer, so out-of-range scores can be tested), ``[[judge:missing]]`` (the first
criterion left out), ``[[judge:notint]]`` (a score that is not a number). Unlisted criteria come back as
``{"score": null, "reason": "not applicable"}``, as the rubric asks.
"""

from __future__ import annotations

import json
import re
from typing import Any

from judging.criteria import CRITERIA
from judging.scores import SCHEMA_NAME

JUDGE_OPENING = "You are the reasongen judge"
_LISTED = re.compile(r"^- (\w+):", re.MULTILINE)
_SCORE = re.compile(r"\[\[judge:score=(-?\d+)\]\]")


def _texts(body: dict[str, Any]) -> tuple[str, str]:
    system = " ".join(str(m.get("content") or "") for m in body.get("messages", []) if m.get("role") == "system")
    user = " ".join(str(m.get("content") or "") for m in body.get("messages", []) if m.get("role") == "user")
    return system, user


def is_judge_request(body: dict[str, Any]) -> bool:
    fmt = body.get("response_format") or {}
    if (fmt.get("json_schema") or {}).get("name") == SCHEMA_NAME:
        return True
    return _texts(body)[0].lstrip().startswith(JUDGE_OPENING)


def verdict_for(body: dict[str, Any]) -> str:
    system, user = _texts(body)
    listed = [name for name in _LISTED.findall(user.split("Instruction:", 1)[0]) if name in CRITERIA]
    forced = _SCORE.search(user)
    score: Any = int(forced.group(1)) if forced else 4
    if "[[judge:notint]]" in user:
        score = "five"
    out: dict[str, Any] = {name: {"score": None, "reason": "not applicable"} for name in CRITERIA}
    for name in listed:
        out[name] = {"score": score, "reason": f"Stub judge: {name.replace('_', ' ')} looks acceptable."}
    if "[[judge:missing]]" in user and listed:
        del out[listed[0]]
    return json.dumps(out)

"""Tolerant parsing of a model's reply into the three draft fields.

Shared by the local backend (a base model will not always follow a schema) and the teacher's last
fallback (servers without structured output). Accepts a JSON object (bare, fenced, or embedded in
prose) or labelled sections ("Reasoning:", "### Response", "**Transformed input:**").
"""

from __future__ import annotations

import json
import re
from typing import Any

FIELDS = ("transformed_input", "reasoning", "response")

_ALIASES = {
    "transformed input": "transformed_input", "transformed_input": "transformed_input",
    "english input": "transformed_input", "translated input": "transformed_input", "translation": "transformed_input",
    "reasoning": "reasoning", "steps": "reasoning",
    "response": "response", "answer": "response", "final answer": "response",
}
_HEADER = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]*)?\**[ \t]*(" + "|".join(sorted(map(re.escape, _ALIASES), key=len, reverse=True))
    + r")[ \t]*\**[ \t]*(?::|$)[ \t]*\**[ \t]*",
    re.IGNORECASE | re.MULTILINE,
)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


class ParseError(ValueError):
    """The reply holds none of the three fields in a recognisable form."""


def parse_json_draft(text: str) -> dict[str, str]:
    """Strict: the whole reply (or its fenced block) is a JSON object with the three string fields."""
    fenced = _FENCE.search(text)
    data = json.loads(fenced.group(1) if fenced else text)
    if not isinstance(data, dict):
        raise ParseError("the JSON reply is not an object")
    return _fields_of(data)


def parse_draft(text: str) -> dict[str, str]:
    """Tolerant: strict JSON, else the first JSON object in the text, else labelled sections."""
    for attempt in (parse_json_draft, _embedded_json, _sections):
        try:
            return attempt(text)
        except (ValueError, TypeError):
            continue
    raise ParseError("no JSON object and no labelled sections (transformed input / reasoning / response)")


def _fields_of(data: dict[str, Any]) -> dict[str, str]:
    found = {_ALIASES.get(str(k).lower().replace("-", " ").strip(), str(k)): v for k, v in data.items()}
    out = {name: str(found[name]).strip() for name in FIELDS if isinstance(found.get(name), (str, int, float))}
    if not out:
        raise ParseError("the JSON object has none of the fields " + ", ".join(FIELDS))
    return out


def first_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object inside prose or a code fence, or None (also how judges read their replies)."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            data, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(data, dict):
            return data
    return None


def _embedded_json(text: str) -> dict[str, str]:
    found = first_json_object(text)
    if found is None:
        raise ParseError("no JSON object in the reply")
    return _fields_of(found)


def _sections(text: str) -> dict[str, str]:
    headers = list(_HEADER.finditer(text))
    out: dict[str, str] = {}
    for here, nxt in zip(headers, headers[1:] + [None]):
        name = _ALIASES[here.group(1).lower()]
        body = text[here.end() : nxt.start() if nxt else len(text)].strip()
        if body and name not in out:
            out[name] = body
    if not out:
        raise ParseError("no labelled sections")
    return out

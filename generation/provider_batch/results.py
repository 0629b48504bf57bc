"""Reading a batch job's output and error lines: a result, or the next request to send for that item.

The decisions mirror online mode (backends/teacher_exchange.py): a structured-output mode the server refuses
steps down a mode, a truncated or refused reply gets one bigger budget, a reply that does not parse gets one repair
(a stage that repairs: drafts; the judge fails it, as online), a server error or an expired request is
retried up to the attempt limit; anything else is a failed result. How a reply's text is read is the
stage's (``parse``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from generation.backends.chat_format import Reply
from generation.provider_batch.requests import bigger_budget, fallback_body, repair_body
from generation.records import DraftResult

_FORMAT_ERROR = re.compile(r"response_format|json_schema|json_object|structured|schema|grammar", re.IGNORECASE)
RETRYABLE = {408, 409, 429, 500, 502, 503, 504}


@dataclass
class Outcome:
    """What to do with one answered line: ``draft`` (the result, whatever the stage) set -> write it;
    ``next_body`` set -> send it next (``kind`` says why, ``counts_attempt`` whether it uses up one of the
    item's attempts)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    draft: DraftResult | None = None
    next_body: dict[str, Any] | None = None
    kind: str = "draft"
    counts_attempt: bool = False
    error: str | None = None


def read_line(raw: bytes) -> tuple[str, dict[str, Any] | None, dict[str, Any] | None]:
    """(custom_id, response or None, error or None) of one output/error file line."""
    data = orjson.loads(raw)
    return data["custom_id"], data.get("response"), data.get("error")


def decide(stage: Any, body: dict[str, Any], kind: str, response: dict[str, Any] | None,
           error: dict[str, Any] | None) -> Outcome:
    """``stage`` (generation.provider_batch.stage.Stage) reads the reply's text and says whether to repair."""
    if response is None:  # expired or cancelled before it ran
        why = (error or {}).get("message") or (error or {}).get("code") or "no answer"
        return Outcome(next_body=body, kind=kind, counts_attempt=True, error=f"not run: {why}")
    status, payload = int(response.get("status_code") or 0), response.get("body") or {}
    if status != 200:
        return _http_error(body, kind, status, payload)
    try:
        reply = Reply.from_body(orjson.dumps(payload))
    except (ValueError, TypeError) as exc:
        return Outcome(next_body=body, kind=kind, counts_attempt=True, error=f"unreadable answer: {exc}")
    out = Outcome(reply.prompt_tokens, reply.completion_tokens)
    problem = reply.incomplete_reason()
    if problem:
        if kind != "budget":
            out.next_body, out.kind, out.error = bigger_budget(body), "budget", problem
        else:
            out.draft = DraftResult(error=f"{problem} (max_tokens={body.get('max_tokens')})",
                                    raw_text=reply.content, finish_reason=reply.finish_reason or "error")
        return out
    text = reply.content or ""
    try:
        out.draft = stage.parse(text, reply.finish_reason)
    except ValueError as exc:
        if not stage.repairs:
            out.draft = DraftResult(error=str(exc), raw_text=text, finish_reason="malformed")
        elif kind == "repair":
            out.draft = DraftResult(error=f"malformed JSON after one repair attempt: {exc}", raw_text=text,
                                    finish_reason="malformed")
        else:
            out.next_body, out.kind, out.error = repair_body(body, text, str(exc)), "repair", f"malformed: {exc}"
    return out


def _http_error(body: dict[str, Any], kind: str, status: int, payload: dict[str, Any]) -> Outcome:
    message = str((payload.get("error") or {}).get("message") or payload)[:300]
    if status == 400 and _FORMAT_ERROR.search(message) and "response_format" in body:
        lower = fallback_body(body)
        if lower is not None:
            return Outcome(next_body=lower, kind=kind, error=f"400 {message}")
    if status in RETRYABLE:
        return Outcome(next_body=body, kind=kind, counts_attempt=True, error=f"{status} {message}")
    return Outcome(draft=DraftResult(error=f"{status}: {message}", finish_reason="error"))

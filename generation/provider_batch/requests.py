"""Request lines for a provider batch job: the body online mode would send, and splitting under the limits."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from generation.backends.base import Prompt
from generation.backends.chat_format import MODES, REPAIR, format_args, messages_for

ENDPOINT = "/v1/chat/completions"


@dataclass(frozen=True, slots=True)
class Limits:
    """Per input file (OpenAI: 50,000 requests and 200 MB)."""

    max_requests: int = 50_000
    max_bytes: int = 200 * 2**20


def body_for(backend: Any, messages: list[dict[str, str]], mode: str, max_tokens: int | None = None) -> dict[str, Any]:
    """The chat-completions body the teacher sends online for these messages (teacher.TeacherBackend._request)."""
    body: dict[str, Any] = {"model": backend.model, "messages": messages,
                            "max_tokens": max_tokens or backend.max_tokens, "temperature": backend.temperature,
                            **format_args(mode)}
    if backend.seed is not None:
        body["seed"] = backend.seed
    return body


def first_body(backend: Any, prompt: Prompt) -> dict[str, Any]:
    return body_for(backend, messages_for(prompt), getattr(backend, "response_mode", MODES[0]))


def fallback_body(body: dict[str, Any]) -> dict[str, Any] | None:
    """The same request one structured-output mode down (json_schema -> json_object -> text), None at the end."""
    kind = (body.get("response_format") or {}).get("type", "text")
    at = MODES.index(kind) if kind in MODES else len(MODES) - 1
    if at + 1 >= len(MODES):
        return None
    lower = {k: v for k, v in body.items() if k != "response_format"}
    return {**lower, **format_args(MODES[at + 1])}


def repair_body(body: dict[str, Any], reply_text: str, error: str) -> dict[str, Any]:
    """Online mode's one repair: the reply, then a request for valid JSON only."""
    messages = [*body["messages"], {"role": "assistant", "content": reply_text},
                {"role": "user", "content": REPAIR.format(error=error[:200])}]
    return {**body, "messages": messages}


def bigger_budget(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "max_tokens": int(body.get("max_tokens") or 1024) * 2}


def new_custom_id(batch_id: int, record_id: int) -> str:
    return f"b{batch_id}-r{record_id}-{uuid.uuid4().hex[:12]}"


def line(custom_id: str, body: dict[str, Any]) -> bytes:
    return orjson.dumps({"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}) + b"\n"


def split(items: Iterable[tuple[Any, bytes]], limits: Limits) -> Iterator[list[tuple[Any, bytes]]]:
    """Group (key, line) pairs into files of at most ``max_requests`` lines and ``max_bytes`` bytes."""
    part: list[tuple[Any, bytes]] = []
    size = 0
    for key, data in items:
        if len(data) > limits.max_bytes:
            raise ValueError(f"one request is {len(data):,} bytes, over the {limits.max_bytes:,}-byte file limit")
        if part and (len(part) >= limits.max_requests or size + len(data) > limits.max_bytes):
            yield part
            part, size = [], 0
        part.append((key, data))
        size += len(data)
    if part:
        yield part

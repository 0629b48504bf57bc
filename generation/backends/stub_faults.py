"""What the loopback stub answers: the fault model (seeded, scripted or marked) and the completions.

Kept apart from the HTTP plumbing in :mod:`generation.backends.openai_stub`.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Any

FAULTS = ("ok", "error", "hang", "drop", "malformed", "length", "refusal", "ratelimit")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
_OPENING = re.compile(r'open with this sentence, verbatim: "([^"]+)"')
_MARKER = re.compile(r"\[\[stub:(\w+)(:once)?\]\]")


@dataclass
class Faults:
    latency_s: float = 0.0
    rps_limit: float | None = None  # token bucket; over it -> 429 with Retry-After
    rps_burst: float | None = None  # bucket size, default one second's worth
    error_rate: float = 0.0  # 500
    hang_rate: float = 0.0  # never answers (until the client gives up)
    drop_rate: float = 0.0  # closes the connection without an answer
    malformed_rate: float = 0.0  # content is not valid JSON
    length_rate: float = 0.0  # finish_reason=length with truncated content
    refusal_rate: float = 0.0  # message.refusal set, content null
    reject_json_schema: bool = False  # 400 for response_format json_schema (like many local servers)
    reject_json_object: bool = False  # 400 for response_format json_object too
    api_key: str | None = field(default=None, repr=False)
    seed: int = 0
    script: list[str] = field(default_factory=list)

    def update(self, **changes: Any) -> None:
        names = {f.name for f in fields(self)}
        for name, value in changes.items():
            if name not in names:
                raise TypeError(f"unknown stub fault {name!r}")
            setattr(self, name, value)


class _Bucket:
    def __init__(self, rate: float, burst: float):
        self.rate, self.burst, self.level, self.at = rate, burst, burst, time.monotonic()

    def take(self) -> float:
        """0 when a request may pass now, else seconds until one may."""
        now = time.monotonic()
        self.level = min(self.burst, self.level + (now - self.at) * self.rate)
        self.at = now
        if self.level >= 1:
            self.level -= 1
            return 0.0
        return (1 - self.level) / self.rate


class StubState:
    def __init__(self, faults: Faults):
        self.faults = faults
        self.stats: Counter[str] = Counter()
        self.in_flight = 0
        self._seen: set[str] = set()
        self.reset()

    def reset(self) -> None:
        self.rng = random.Random(self.faults.seed)
        self.bucket = None
        if self.faults.rps_limit:
            self.bucket = _Bucket(self.faults.rps_limit, self.faults.rps_burst or max(1.0, self.faults.rps_limit))
        self.stats.clear()
        self._seen.clear()
        self.accepted_at: list[float] = []  # first and last time a completion was accepted (wall clock)

    def accepted(self) -> None:
        """Count a completion the server accepted (not 429/400), for rate measurements at the server."""
        now = time.time()
        self.accepted_at = [self.accepted_at[0] if self.accepted_at else now, now]
        self.stats["accepted"] += 1

    def snapshot(self) -> dict[str, Any]:
        span = dict(zip(("first_accepted_at", "last_accepted_at"), self.accepted_at))
        return {**self.stats, "in_flight": self.in_flight, **span}

    def pick_fault(self, body: dict[str, Any]) -> str:
        marked = self._marker(body)
        if marked:
            return marked
        if self.faults.script:
            return self.faults.script.pop(0)
        f, roll = self.faults, self.rng.random()
        for name, rate in (("error", f.error_rate), ("hang", f.hang_rate), ("drop", f.drop_rate),
                           ("malformed", f.malformed_rate), ("length", f.length_rate), ("refusal", f.refusal_rate)):
            if roll < rate:
                return name
            roll -= rate
        return "ok"

    def _marker(self, body: dict[str, Any]) -> str | None:
        text = _last_user(body)
        match = _MARKER.search(text)
        if not match:
            return None
        digest = hashlib.sha256(text.encode()).hexdigest()
        if match.group(2) and digest in self._seen:
            return None
        self._seen.add(digest)
        return match.group(1)


def _last_user(body: dict[str, Any]) -> str:
    users = [m.get("content") or "" for m in body.get("messages", []) if m.get("role") == "user"]
    text = users[0] if users else ""
    return text if isinstance(text, str) else json.dumps(text)


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def draft_for(body: dict[str, Any]) -> dict[str, str]:
    """A plausible English draft from the prompt: the stub cannot translate, so it describes and echoes.

    It keeps the reference's numbers and, when the system prompt names a sentence to open the reasoning
    with (the default template does for ja/zh), opens with it.
    """
    text = _last_user(body)
    reference = text.split("Reference answer:", 1)[1].strip() if "Reference answer:" in text else text
    source = text.split("Reference answer:", 1)[0]
    if "Input" in source:
        source = source.split("Input", 1)[1].partition("\n")[2]
    numbers = " ".join(re.findall(r"\d+(?:\.\d+)?", reference))
    english = f"The answer, in English, follows the reference. {numbers}" if _CJK.search(reference) else reference
    opening = _OPENING.search(_system(body))
    steps = ("First, read the instruction and the input carefully. Next, identify what is asked and which facts "
             "in the input answer it. Finally, state the answer plainly in English.")
    return {
        "transformed_input": source.strip() if not _CJK.search(source) else "The input text, rendered in English.",
        "reasoning": f"{opening.group(1)} {steps}" if opening else steps,
        "response": english.strip() or "No answer.",
    }


def _system(body: dict[str, Any]) -> str:
    return " ".join(str(m.get("content") or "") for m in body.get("messages", []) if m.get("role") == "system")


def completion(body: dict[str, Any], fault: str, request_no: int) -> dict[str, Any]:
    content: str | None = json.dumps(draft_for(body), ensure_ascii=False)
    finish, message = "stop", {"role": "assistant"}
    if fault == "malformed":
        content = content[: len(content) // 2] + ' <<not json'
    if fault == "length":
        content, finish = content[: max(8, len(content) // 3)], "length"
    budget = body.get("max_completion_tokens") or body.get("max_tokens")
    if budget and _tokens(content) > budget:
        content, finish = content[: budget * 4], "length"
    if fault == "refusal":
        content, message["refusal"] = None, "I'm sorry, but I can't help with that."
    prompt_text = "".join(str(m.get("content") or "") for m in body.get("messages", []))
    usage = {"prompt_tokens": _tokens(prompt_text), "completion_tokens": _tokens(content or "x")}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return {
        "id": f"chatcmpl-stub-{request_no}", "object": "chat.completion", "created": int(time.time()),
        "model": body.get("model", "stub"), "usage": usage,
        "choices": [{"index": 0, "finish_reason": finish, "message": {**message, "content": content}}],
    }

"""The fault model of the loopback server: seeded, scripted or marked faults, a token bucket, counters.

Kept apart from the HTTP plumbing in :mod:`reasongen.testing.openai_server` and from what a reply says
(:mod:`reasongen.testing.completions`). A new server behaviour is a field here (it becomes a
``--flag`` of ``python -m reasongen.testing.openai_server`` and a keyword of ``start_stub_server``).
"""

from __future__ import annotations

import hashlib
import random
import re
import time
from collections import Counter, deque
from dataclasses import dataclass, field, fields
from typing import Any

from reasongen.testing.completions import last_user

FAULTS = ("ok", "error", "hang", "drop", "malformed", "length", "refusal", "ratelimit")
_MARKER = re.compile(r"\[\[stub:(\w+)(:once)?\]\]")


@dataclass
class Faults:
    latency_s: float = 0.0
    rps_limit: float | None = None  # token bucket; over it -> 429 with Retry-After
    rps_burst: float | None = None  # bucket size, default one second's worth
    rps_window_s: float | None = None  # instead of the bucket: at most rps_limit x this many requests in ANY window
    #                                    this long (a sliding log, as servers that count per second do)
    error_rate: float = 0.0  # 500
    hang_rate: float = 0.0  # never answers (until the client gives up)
    drop_rate: float = 0.0  # closes the connection without an answer
    malformed_rate: float = 0.0  # content is not valid JSON
    length_rate: float = 0.0  # finish_reason=length with truncated content
    refusal_rate: float = 0.0  # message.refusal set, content null
    reject_json_schema: bool = False  # 400 for response_format json_schema (like many local servers)
    reject_json_object: bool = False  # 400 for response_format json_object too
    reply: str = "draft"  # which content builder answers (see completions.CONTENT)
    # Self-hosted servers (issue 16): "prose" replies ignore response_format; serial computes one request at a
    # time (latency grows with its queue); context_length is reported in /v1/models as max_model_len and longer
    # requests get vLLM's 400; error_message is the 500's message.
    serial: bool = False
    context_length: int | None = None
    error_message: str = "The server had an error while processing your request."
    batch_seconds: float = 0.0  # simulated processing time of a /v1/batches job (batch_api.py)
    batch_expire_after: float | None = None  # a job expires once this fraction of it is done
    batch_fail_validation: bool = False  # every new job fails validation
    state_dir: str | None = None  # files and batch jobs kept here, so a restarted server carries on
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


class _Window:
    """At most ``rate * window`` requests accepted in any ``window`` seconds (a sliding log of accept times)."""

    def __init__(self, rate: float, window: float):
        self.window, self.size = window, max(1, int(rate * window))
        self.accepted: deque[float] = deque()

    def take(self) -> float:
        now = time.monotonic()
        while self.accepted and self.accepted[0] <= now - self.window:
            self.accepted.popleft()
        if len(self.accepted) < self.size:
            self.accepted.append(now)
            return 0.0
        return self.accepted[0] + self.window - now


class StubState:
    def __init__(self, faults: Faults):
        self.faults = faults
        self.stats: Counter[str] = Counter()
        self.in_flight = 0  # completions accepted and being answered
        self.requests_in_flight = 0  # any /v1 request between arrival and answer (429s and 400s too)
        self._seen: set[str] = set()
        self.reset()

    def reset(self) -> None:
        self.rng = random.Random(self.faults.seed)
        self.bucket: _Window | _Bucket | None = None
        if self.faults.rps_limit and self.faults.rps_window_s:
            self.bucket = _Window(self.faults.rps_limit, self.faults.rps_window_s)
        elif self.faults.rps_limit:
            self.bucket = _Bucket(self.faults.rps_limit, self.faults.rps_burst or max(1.0, self.faults.rps_limit))
        self.stats.clear()
        self._seen.clear()
        self.accepted_at: list[float] = []  # first and last time a completion was accepted (wall clock)

    def accepted(self) -> None:
        """Count a completion the server accepted (not 429/400), for rate measurements at the server."""
        now = time.time()
        self.accepted_at = [self.accepted_at[0] if self.accepted_at else now, now]
        self.stats["accepted"] += 1

    def enter(self, counter: str) -> None:
        value = getattr(self, counter) + 1
        setattr(self, counter, value)
        self.stats[f"max_{counter}"] = max(self.stats[f"max_{counter}"], value)

    def leave(self, counter: str) -> None:
        setattr(self, counter, getattr(self, counter) - 1)

    def snapshot(self) -> dict[str, Any]:
        span = dict(zip(("first_accepted_at", "last_accepted_at"), self.accepted_at))
        return {"max_in_flight": 0, "max_requests_in_flight": 0, **self.stats, "in_flight": self.in_flight,
                "requests_in_flight": self.requests_in_flight, **span}

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
        text = last_user(body)
        match = _MARKER.search(text)
        if not match:
            return None
        digest = hashlib.sha256(text.encode()).hexdigest()
        if match.group(2) and digest in self._seen:
            return None
        self._seen.add(digest)
        return match.group(1)

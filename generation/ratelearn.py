"""The rate half of :mod:`generation.throttle`: the request rate to pace at, learned from what the server accepted.

Phases (``LearnedRate.phase``):

- ``ceiling``: the user gave an RPM; paced at it (times the headroom of :mod:`generation.ratelimit`); it is
  trusted once: a 429 burst under it (another client on the key, a late send) holds callers but cuts no pace.
  A second burst within ``DOUBT_S`` of the last says the given limit does not hold from here (sends that leave
  late on a loaded machine, another client on the key): with learning on, the pace is cut by ``CUT`` as a
  learned one would be (``learned`` below), and probes back up to the given limit after its plateau;
- ``ramp``: no RPM and learning on: paced from ``RAMP_START_RPS``, times ``RAMP_FACTOR`` every ``RAMP_S`` while
  the pace actually holds requests back, so the first 429 comes from a paced stream (a few refusals), never from
  an unpaced burst (a storm of them). The Redis pacer also steps while the last second's sends reach ``NEAR`` of
  it, so a pace no server has pushed back on stays well above the sends, and books such a pace in leases (one
  round trip for many requests);
- ``learned``: after the ramp's first 429 burst (with ``MIN_EVIDENCE`` accepted requests or a second of
  traffic behind it; before that a 429 only holds callers and pauses the ramp): paced at ``HEADROOM`` of what
  the server accepted in the ``OBSERVE_S`` before the refused request was sent (sends minus refusals, counted
  by send time, so the server's latency does not blur it). A later burst cuts the pace by ``CUT`` only
  (multiplicative decrease): it comes from a probe a few percent too high or from jitter, and one second's
  accepted count (a start-up bunch, a token bucket's burst, a hold) can be far below what the server allows.
  After a cut the pace holds for ``PLATEAU_S`` (it sits just under a rate the server refused: probing at once
  buys a 429 burst every few seconds for nothing), then +``PROBE_STEP`` every ``PROBE_EVERY_S`` while the pace
  binds, so a raised limit is found again, and back to ``ceiling`` once the probe reaches it;
- ``off``: no RPM and learning off: unpaced (a 429 still holds every caller for its ``Retry-After``).

One cut per burst: a refusal of a request sent before the last cut says nothing about the new rate (the same
rule as the concurrency limit's epochs), nor does one sent within ``OBSERVE_S`` after it, while the server's
window still counts traffic from before the cut (otherwise each refusal of that second compounds the cut).
This module is the pure state with the clock passed in; the in-process pacer
(:class:`generation.ratelimit.LocalLimiter`) wraps it, and the Redis pacer (:mod:`generation.ratelimit_redis`)
runs the same rules in Lua so workers sharing a key learn one rate.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

RAMP_START_RPS = 50.0
RAMP_S = 0.1
RAMP_FACTOR = 1.5  # a bigger step reaches a fast server sooner and overshoots a slow one by more (more 429s)
OBSERVE_S = 1.0  # most servers count per second or per minute: a second of traffic is the shortest window
HEADROOM = 0.99  # the first cut: of the rate the server was seen to accept (a given limit's headroom, too)
CUT = 0.97  # a later burst: of the pace (it came from a probe a few percent too high, or from jitter)
PROBE_EVERY_S = 5.0
PROBE_STEP = 0.02
PLATEAU_S = 30.0  # after a cut, the pace stays put this long before probing past it (as TCP CUBIC plateaus)
DOUBT_S = PLATEAU_S  # a given limit's second 429 burst this soon after the last: learned below it (``ceiling``)
MIN_RPS = 0.2
MIN_EVIDENCE = 10  # accepted requests a ramp's first cut needs (or a second of traffic)
KEEP_S = 10.0  # sends are remembered this long (a refused request may have been sent this long ago)
NEAR = 0.75  # Redis pacer: its ramp also steps while the last window's sends reach this share of the pace, and
# leases only below it (the in-process pacer has no round trip to save and keeps the plain rule)
LEASE_S = 0.05  # a lease of slots (generation.ratelimit_redis) is spent within this long or given back
LEASE_MIN, LEASE_MAX = 4, 64  # slots a lease asks for: twice what the last one sent, within these


class TimeLog:
    """Increasing times, with O(1) appends and window counts and O(log n) counts at any past instant."""

    def __init__(self, keep_s: float = KEEP_S):
        self.keep_s = keep_s
        self._times: list[float] = []
        self._head = 0  # first entry still kept

    def add(self, when: float) -> None:
        self._times.append(when)
        if self._head > 1024 and self._head * 2 > len(self._times):
            del self._times[: self._head]
            self._head = 0
        while self._times[self._head] <= when - self.keep_s:
            self._head += 1

    def count(self, start: float, end: float) -> int:
        """Entries in (start, end]."""
        lo = bisect.bisect_right(self._times, start, self._head)
        return max(0, bisect.bisect_right(self._times, end, self._head) - lo)

    def oldest_after(self, start: float) -> float | None:
        i = bisect.bisect_right(self._times, start, self._head)
        return self._times[i] if i < len(self._times) else None


class LearnedRate:
    """The rate rules with the clock passed in (pure state: no waiting, no locking)."""

    def __init__(self, ceiling_rps: float = 0.0, learn: bool = True, start_rps: float | None = None):
        self.ceiling, self.learn = ceiling_rps, learn
        self.rps: float | None = start_rps or (RAMP_START_RPS if learn and not ceiling_rps else None)
        self.phase = "learned" if start_rps else "ramp" if self.rps else "ceiling" if ceiling_rps else "off"
        self.cuts = 0
        self._changed_at = 0.0
        self._cut_at = -math.inf
        self.sends = TimeLog()
        self._refused: list[float] = []

    def rate(self) -> float:
        """Requests/s to pace at now (0: unpaced)."""
        if self.rps is None:
            return self.ceiling
        return min(self.rps, self.ceiling) if self.ceiling else self.rps

    def booked(self, now: float, binding: bool) -> float:
        """A request is being booked at ``now`` (``binding``: the pace holds it back); returns the rate."""
        if self.rps is not None and binding and (self.phase == "ramp" or now - self._cut_at >= PLATEAU_S):
            step = (RAMP_FACTOR, RAMP_S) if self.phase == "ramp" else (1 + PROBE_STEP, PROBE_EVERY_S)
            if now - self._changed_at >= step[1]:
                self.rps, self._changed_at = self.rps * step[0], now
                if self.ceiling and self.rps >= self.ceiling:  # probed back up to the limit the user gave
                    self.rps, self.phase = None, "ceiling"
        return self.rate()

    def refused(self, now: float, sent_at: float) -> bool:
        """The server refused a request sent at ``sent_at``; True when this starts a new burst (the pace is cut
        then, unless it is the limit the user gave: trusted, a refusal under it is held, not learned from)."""
        self._refused = [t for t in self._refused if t > now - KEEP_S] + [sent_at]
        if sent_at < self._cut_at + OBSERVE_S:
            return False
        previous, self._cut_at = self._cut_at, now
        if self.phase == "off" or (self.phase == "ceiling" and not (self.learn and now - previous < DOUBT_S)):
            return True
        sent = self.sends.count(sent_at - OBSERVE_S, sent_at)
        refused = sum(1 for t in self._refused if sent_at - OBSERVE_S < t <= sent_at)
        oldest = self.sends.oldest_after(-math.inf)
        if self.phase == "ramp" and sent - refused < MIN_EVIDENCE and (oldest is None or oldest > sent_at - OBSERVE_S):
            self._changed_at = now + OBSERVE_S  # too early to tell a rate: a hold, and no ramping for a while
            return True
        accepted = max(0.0, (sent - refused) / OBSERVE_S)
        current = self.rate() or math.inf
        measured = min(current, accepted) * HEADROOM if self.phase == "ramp" else current * CUT
        self.rps = max(MIN_RPS, measured)
        self.phase, self._changed_at = "learned", now
        self.cuts += 1
        return True

    def snapshot(self) -> dict[str, Any]:
        rate = self.rate()
        return {"phase": self.phase, "paced_rpm": round(rate * 60) if rate else None,
                "learned_rpm": round(self.rps * 60) if self.rps and self.phase == "learned" else None,
                "cuts": self.cuts}


def read_learned(client: Any, state_key: str) -> dict[str, Any] | None:
    """What workers sharing ``state_key`` learned, for ``status``: None until a 429 taught a rate."""
    rps, phase, cuts = client.hmget(state_key, "rps", "phase", "cuts")
    if rps is None or (phase or b"").decode() != "learned":
        return None
    return {"learned_rpm": round(float(rps) * 60), "cuts": int(cuts or 0)}

"""How much the teacher sends to one endpoint: one object, two dimensions, one reaction to overload.

- **Concurrency** (:mod:`generation.concurrency`): how many requests in flight, learned from latency and
  timeouts (Gradient2 with slow start), one limiter per event loop.
- **Pace** (:mod:`generation.ratelimit`, :mod:`generation.ratelimit_redis`): requests (and tokens) per second;
  the RPM/TPM the user gave is the ceiling, otherwise the rate is learned from what the server accepted when
  it pushed back. Shared by every worker through Redis when there is one.

A request takes its place in flight first and its pacing slot last, right before the send (slots taken before
a wait for a place go out in bunches when places free up), and the concurrency limit measures latency from
the send, not from the pacing wait.

Every failed request is classified once (:func:`generation.retry.load_outcome`). A 429/503 is the only
overload signal and is handled here, in one place: every caller sharing the pace is held for the server's
``Retry-After`` (or ``DEFAULT_HOLD_S``), and the first refusal of a burst cuts both dimensions once: the pace
to what the server accepted (the RPM the user gave is trusted for one burst, not two: generation.ratelearn)
and the concurrency limit by ``OVERLOAD_CUT``. A 503 says the server is busy, not that it counts requests: it holds callers and cuts the
concurrency limit (once per epoch), and teaches the pace nothing (an outage would otherwise leave a pace of
nearly nothing behind). Whether a refusal starts a new burst is decided once, by the pace (shared through Redis,
so two workers seeing one burst cut once: a request sent before the last cut, or while the server's window
still counted traffic from before it, is the same burst). Later refusals of a burst are counted only.
:meth:`Throttle.snapshot` is what ``status`` and ``workers`` show: the current concurrency limit and the pace
(given, learned or ramping) together.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from dataclasses import dataclass
from typing import Any

from generation.concurrency import AdaptiveConcurrency, Outcome, Permit
from generation.ratelimit import NoLimit, RateLimiter
from generation.retry import load_outcome

log = logging.getLogger(__name__)

OVERLOAD_CUT = 0.75
DEFAULT_HOLD_S = 1.0  # a 429/503 without Retry-After
# A shared pacer's Redis that does not answer (restarting, failing over): requests wait for it, retrying from
# PACER_RETRY_S up to a second apart, rather than fail their drafts (bench/chaos: a Redis restart failed 174
# records); one away for longer than PACER_PATIENCE_S fails the request, naming the limiter.
PACER_RETRY_S = 0.05
PACER_PATIENCE_S = 60.0


class PacerUnreachable(RuntimeError):
    """The shared pacer's store stayed unreachable: the request was not sent (the endpoint is not at fault)."""


def pacer_down(exc: BaseException) -> bool:
    """The pacer's store (Redis) did not answer: a refused or dropped connection or a timeout, not a bug."""
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeout
    except ImportError:  # no Redis client: only the in-process pacer, which has no connection to lose
        return False
    return isinstance(exc, RedisConnectionError | RedisTimeout)


@dataclass(frozen=True)
class ThrottleState:
    """One snapshot of both dimensions (``limit``/``phase``/``reason`` are the concurrency's, as before)."""

    limit: int
    max_limit: int
    in_flight: int
    phase: str
    reason: str
    timeouts: int
    overloads: int
    baseline_s: float | None
    recent_s: float | None
    pace: dict[str, Any]  # phase (ceiling|ramp|learned|off), paced_rpm, learned_rpm, cuts
    bursts: int  # 429 bursts reacted to (each: one cut of each dimension)

    def describe(self) -> str:
        """One line for status: the concurrency limit's phase and reason, and the pace."""
        text = f"{self.phase}: {self.reason}"
        rpm, how = self.pace.get("paced_rpm"), {"ceiling": "the limit given", "learned": "learned from 429s"}
        if rpm and self.pace.get("phase") in how:  # a ramp that no 429 has stopped yet says nothing about the server
            text += f"; paced at {rpm:,} req/min ({how[self.pace['phase']]})"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class Throttle:
    def __init__(self, max_limit: int, *, initial: int | None = None, timeout_s: float | None = None,
                 adaptive: bool = True, pacer: RateLimiter | None = None):
        self.max_limit, self.initial, self.timeout_s, self.adaptive = max_limit, initial, timeout_s, adaptive
        self.pacer: RateLimiter = pacer or NoLimit()
        self._limits: weakref.WeakKeyDictionary[Any, AdaptiveConcurrency] = weakref.WeakKeyDictionary()
        self._last: AdaptiveConcurrency | None = None
        self.bursts = 0
        self._warned_at = float("-inf")

    def concurrency(self) -> AdaptiveConcurrency:
        """The running loop's concurrency limiter (asyncio futures cannot cross loops)."""
        loop = asyncio.get_running_loop()
        limit = self._limits.get(loop)
        if limit is None:
            limit = self._limits[loop] = AdaptiveConcurrency(self.max_limit, initial=self.initial,
                                                             timeout_s=self.timeout_s, adaptive=self.adaptive)
        self._last = limit
        return limit

    async def acquire(self, tokens: int) -> Permit:
        """A place in flight, then the pacing slot; ``permit.started`` is the send time."""
        limit = self.concurrency()
        permit = await limit.acquire()
        try:
            await self._paced(tokens)
        except BaseException:
            limit.release(permit, Outcome.ERROR)
            raise
        permit.started = time.monotonic()
        return permit

    async def _paced(self, tokens: int) -> None:
        """The pacing slot, waiting out a pacer store that does not answer (see ``PACER_PATIENCE_S``)."""
        started, delay = time.monotonic(), PACER_RETRY_S
        while True:
            try:
                await self.pacer.acquire(tokens)
                return
            except Exception as exc:  # noqa: BLE001 - only an unreachable store is waited for
                if not pacer_down(exc):
                    raise
                error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() - started >= PACER_PATIENCE_S:
                # Raised here, outside the handler, so no connection error hangs on it as its context: the breaker
                # reads a refused connection in an error's chain as the teacher's endpoint refusing it.
                raise PacerUnreachable(f"the shared rate limiter ({_where(self.pacer)}) did not answer for "
                                       f"{PACER_PATIENCE_S:.0f}s: {error}; the request was not sent")
            if time.monotonic() - self._warned_at > 10:  # one line per outage, not one per waiting request
                self._warned_at = time.monotonic()
                log.warning("the shared rate limiter does not answer (%s): requests wait for it", error)
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 2)

    def cancel(self, permit: Permit) -> None:
        """Give a place back without a sample (the request was never sent)."""
        self.concurrency().release(permit, Outcome.ERROR)

    async def succeeded(self, permit: Permit, estimated: int, total_tokens: int | None) -> None:
        self.concurrency().release(permit, Outcome.OK)  # raw latency: a queue wait does not scale with length
        if total_tokens:  # servers that report no usage keep the estimate
            try:
                await self.pacer.settle(estimated, total_tokens)
            except Exception as exc:  # noqa: BLE001 - the reply is in: a token count lost is no reason to fail it
                if not pacer_down(exc):
                    raise

    async def failed(self, permit: Permit, exc: BaseException) -> Outcome:
        """The one classification of a failed request, and the one reaction to overload (see the module doc)."""
        kind, retry_after = load_outcome(exc)
        outcome = Outcome(kind)
        limit = self.concurrency()
        limit.release(permit, outcome)
        if outcome is not Outcome.OVERLOAD:
            return outcome
        hold = DEFAULT_HOLD_S if retry_after is None else retry_after
        try:
            new_burst = await self._overloaded(limit, permit, exc, hold)
        except Exception as down:  # noqa: BLE001 - the retry waits for the pacer in acquire
            if not pacer_down(down):
                raise
            log.warning("the shared rate limiter does not answer: a %s was not shared with it", outcome.value)
            new_burst = limit.cut(permit, OVERLOAD_CUT, "overloaded (429/503; the shared rate limiter did not answer)")
        self.bursts += new_burst
        return outcome

    async def _overloaded(self, limit: AdaptiveConcurrency, permit: Permit, exc: BaseException, hold: float) -> bool:
        if getattr(exc, "status_code", None) == 429:  # a rate limit: the pace learns from it and decides the burst
            new_burst = await self.pacer.refused(time.monotonic() - permit.started, hold)
            if new_burst:  # (shared by every worker); the concurrency follows
                limit.cut(permit, OVERLOAD_CUT, "rate limited (429)", force=True)
        else:  # 503: the server is busy, not counting requests: a hold and fewer in flight, no pace learned
            await self.pacer.hold(hold)
            new_burst = limit.cut(permit, OVERLOAD_CUT, "server overloaded (503)")
        return new_burst

    def snapshot(self) -> ThrottleState | None:
        """The loop that sent last (None before any request)."""
        limit = self._last
        if limit is None:
            return None
        s = limit.snapshot()
        return ThrottleState(s.limit, s.max_limit, s.in_flight, s.phase, s.reason, s.timeouts, s.overloads,
                             s.baseline_s, s.recent_s, self.pacer.rate_state(), self.bursts)


def _where(pacer: RateLimiter) -> str:
    url = getattr(pacer, "redis_url", None)
    if not url:
        return type(pacer).__name__
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"Redis at {parts.hostname or '?'}:{parts.port or 6379}"  # never the URL: it may hold a password

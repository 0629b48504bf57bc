"""Adaptive concurrency, the in-flight half of :mod:`generation.throttle`: learned from latency and timeouts.

For a self-hosted server that queues instead of batching (latency grows with the queue, requests time out
in it), and the first line against a rate-limited API (the throttle cuts it once per 429 burst). It is
a gradient limiter after Netflix's concurrency-limits (Gradient2) with a TCP-like slow start:

- every finished request is a sample of its latency (per completion token when the caller gives
  tokens, so long and short answers compare); the baseline is the lowest sample seen (a server that got slower
  for good settles at a lower limit, never at timeouts), except when latency does not follow the load: a
  window at half the limit or less as slow as the one before, or a window near the timeout many times slower
  than the one before at no more load (more than a queue this limit made could add: Little's law). Then the
  server is slower for everyone, the baseline is re-based on its new pace, and the near-timeout cut waits until
  latency grows past it; after a jump the limit is scaled by it, so the rate it had gets through at the new
  latency (the server gets no more requests per second than before);
- once a window of samples is in (as many as may be in flight, at least ``MIN_WINDOW``), the window's
  median is compared with the baseline: ``gradient = clamp(tolerance * baseline / median, 0.5, 1)`` (tolerance 4).
  While the median stays within 2x the baseline the limit doubles (slow start; re-entered whenever latency
  comes back to the baseline, so the limit recovers in a few windows once a slow period ends). Otherwise,
  while the gradient is 1, it grows by ``max(sqrt(limit) / 2, limit / 4)`` a window; below 1 it moves to
  ``limit * gradient + sqrt(limit)``, half-way per window (a server that batches keeps a gradient of 1 and
  the limit grows; one that queues sees latency rise with the limit and the limit settles where the queue
  is a few requests deep);
- timeouts halve the limit once they are more than a few in a window (``max(2, 5%)`` of it: a queue times
  out many requests at once, a server that hangs a few requests on purpose is not a queue, and fewer neither
  cut nor stop growth), at most once per window; a window whose 90th-percentile latency passes half the
  timeout halves it too (down to ``FLOOR``, never below it: only timeouts that keep coming go lower), so
  requests are not left to time out in a server's queue;
- samples of requests started under a higher limit are ignored after a decrease, so one burst of
  slow replies is one decrease, not one per reply.

429s/503s are not handled here: :mod:`generation.throttle` owns the one reaction to them (it calls
:meth:`AdaptiveConcurrency.cut` with the same epoch rule, and holds callers for ``Retry-After`` in the pacer).

Interface (asyncio, one event loop; not thread-safe)::

    limiter = AdaptiveConcurrency(max_limit=64, initial=4, timeout_s=120)
    async with limiter.slot() as permit:          # waits while ``in_flight >= limit``
        reply = await send()
        permit.record(Outcome.OK, tokens=reply.completion_tokens)
    # or: permit = await limiter.acquire(); ...; limiter.release(permit, Outcome.TIMEOUT)
    limiter.limit, limiter.in_flight, limiter.snapshot()

An exception escaping ``slot()`` without a ``record`` is classified by ``classify`` (default: a
``TimeoutError`` is a timeout, anything else a neutral error that neither grows nor shrinks the limit).
``adaptive=False`` gives a plain semaphore of ``max_limit`` with the same interface.
"""

from __future__ import annotations

import asyncio
import enum
import math
import statistics
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

MIN_WINDOW = 4
# Latency may rise this much over the baseline before the limit comes down. Generous on purpose: a batching
# server's per-token latency grows with its batch long before its throughput stops growing, and on a server
# that computes one request at a time a queue of a few requests hides the client's own gaps between them.
TOLERANCE = 4.0
SLOW_START_TOLERANCE = 2.0  # doubling stops sooner, so it cannot overshoot far into a server's queue
# The baseline never drifts up: on a server that queues, every sample carries the queue, so a drifting
# baseline would follow the queue up and let the limit creep without end (seen in tests).
BASELINE_DRIFT = 1.0
TIMEOUT_FRACTION = 0.5  # a window whose p90 latency passes this share of the timeout is queueing
NEAR_TIMEOUT_PERCENTILE = 0.9  # not the slowest request: one straggler is not a queue
# A window's timeouts cut only when more than this share of it (and at least 2) timed out: a queue in front of
# a server times out many requests at once, while a server that hangs a few requests (2% in bench/chaos) would
# otherwise halve the limit every few seconds and leave it at 1.
TIMEOUT_SHARE = 0.05
# A window at half the limit (or less) whose median latency is still this share of the one before: the latency does
# not follow the limit, so it is not a queue (bench/chaos: the server 1.5 s slower for everyone, 3 s timeout).
SHIFT_KEPT = 0.85
SHIFT_MARGIN = 1.25  # near the timeout after such a shift: cut again only if latency grows this much past it
# A window this many times slower than the one before at no more load (in flight at most what it was): a queue
# this limit made grows with what it holds (Little's law), so a jump at the same load is the server's own pace
# (bench/chaos: 1.5 s added to every request) and is re-based at once instead of cut first.
SHIFT_JUMP = 3.0
FLOOR = 4  # latency alone never cuts below this; only timeouts that keep coming do
STEADY_GROWTH = 0.25  # share of the limit added per window while the gradient is 1 (past slow start)


class Outcome(enum.Enum):
    OK = "ok"  # a reply: a latency sample
    TIMEOUT = "timeout"  # the client gave up waiting: cut hard
    OVERLOAD = "overload"  # 429 or 503: counted here; the throttle decides the cut (generation/throttle.py)
    ERROR = "error"  # anything else (4xx, 500, dropped connection): neutral


@dataclass
class Permit:
    """One granted request: when it started and under which limit (its epoch)."""

    started: float
    epoch: int
    outcome: Outcome | None = None
    tokens: int | None = None
    released: bool = field(default=False, repr=False)

    def record(self, outcome: Outcome, *, tokens: int | None = None) -> None:
        self.outcome, self.tokens = outcome, tokens


@dataclass(frozen=True)
class LimitState:
    """What ``status``/``workers`` show."""

    limit: int
    max_limit: int
    in_flight: int
    phase: str  # "slow start", "steady", "fixed"
    baseline_s: float | None  # latency (per token when tokens are given) with no queue
    recent_s: float | None  # median of the last window
    reason: str  # why the limit last changed
    timeouts: int
    overloads: int

    def as_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def default_classify(exc: BaseException) -> Outcome:
    return Outcome.TIMEOUT if isinstance(exc, TimeoutError) else Outcome.ERROR


@dataclass(frozen=True)
class _Window:
    """A closed window of samples: the limit it ran under and what it saw."""

    limit: float
    median: float  # of the samples (per token when tokens are given)
    latency: float  # raw seconds from here on: the median,
    low: float  # the fastest
    p90: float  # and the 90th percentile, for the near-timeout check

    @property
    def one_pace(self) -> bool:
        """Its replies all came at about one pace (not a queue's spread, nor a change of pace mid-window)."""
        return self.low * SHIFT_JUMP >= self.p90


class AdaptiveConcurrency:
    def __init__(self, max_limit: int, *, initial: int | None = None, min_limit: int = 1,
                 timeout_s: float | None = None, adaptive: bool = True, tolerance: float = TOLERANCE,
                 classify: Callable[[BaseException], Outcome] = default_classify,
                 clock: Callable[[], float] = time.monotonic):
        if max_limit < 1 or min_limit < 1 or min_limit > max_limit:
            raise ValueError(f"need 1 <= min_limit <= max_limit, got {min_limit} and {max_limit}")
        self.max_limit, self.min_limit, self.adaptive = max_limit, min_limit, adaptive
        self.timeout_s, self.tolerance, self.classify, self._clock = timeout_s, tolerance, classify, clock
        start = max_limit if not adaptive or initial is None else initial
        self._limit = float(min(max_limit, max(min_limit, start)))
        self.in_flight = 0
        self._epoch = 0
        self._slow_start = adaptive
        self._samples: list[float] = []
        self._latencies: list[float] = []  # raw seconds, for the near-timeout check
        self._window_timeouts = 0
        self._prev_window: _Window | None = None  # the last window closed
        self._shifted_p90: float | None = None  # p90 latency when a cut was seen not to lower latency
        self._peak = 0  # most in flight during the window: a limit never reached is not grown
        self._baseline: float | None = None
        self._recent: float | None = None
        self._reason = "fixed" if not adaptive else "start"
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.timeouts = self.overloads = self.cuts = 0

    @property
    def limit(self) -> int:
        return max(self.min_limit, int(self._limit))

    def snapshot(self) -> LimitState:
        phase = "fixed" if not self.adaptive else "slow start" if self._slow_start else "steady"
        return LimitState(self.limit, self.max_limit, self.in_flight, phase, self._baseline, self._recent,
                          self._reason, self.timeouts, self.overloads)

    async def acquire(self) -> Permit:
        if not self._waiters and self._may_start():
            self._grant()
            return Permit(self._clock(), self._epoch)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._wake()
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # granted, but the caller went away: give it back
                self.in_flight -= 1
                self._wake()
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise
        return Permit(self._clock(), self._epoch)

    def release(self, permit: Permit, outcome: Outcome | None = None, *, tokens: int | None = None) -> None:
        if permit.released:
            return
        permit.released = True
        if outcome is not None:
            permit.record(outcome, tokens=tokens)
        self.in_flight -= 1
        if permit.outcome is Outcome.OVERLOAD:
            self.overloads += 1
        elif self.adaptive:
            self._learn(permit, self._clock() - permit.started)
        self._wake()

    def cut(self, permit: Permit, factor: float, reason: str, force: bool = False) -> bool:
        """Cut the limit by ``factor`` unless a cut already followed ``permit``'s start (one cut per burst: the
        replies to requests sent under the old limit say nothing about the new one); ``force``: the caller
        decided it is a new burst. True when it cut."""
        if permit.epoch != self._epoch and not force:
            return False
        self.cuts += 1
        if self.adaptive:
            self._set(self._limit * factor, reason)
        else:
            self._epoch += 1  # a fixed limit stays, but the burst is still one event
        return True

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Permit]:
        permit = await self.acquire()
        try:
            yield permit
        except BaseException as exc:
            if permit.outcome is None:
                permit.outcome = Outcome.ERROR if isinstance(exc, asyncio.CancelledError) else self.classify(exc)
            raise
        finally:
            self.release(permit, permit.outcome or Outcome.ERROR)

    # -- learning ----------------------------------------------------------------------------------
    def _learn(self, permit: Permit, latency: float) -> None:
        outcome = permit.outcome or Outcome.ERROR
        if outcome is Outcome.TIMEOUT:
            self.timeouts += 1
            if permit.epoch == self._epoch:
                self._window_timeouts += 1
                if self._window_timeouts >= max(2.0, TIMEOUT_SHARE * self._window_size()):
                    self._set(self._limit * 0.5, f"{self._window_timeouts} requests timed out")
                elif self._window_full():
                    self._close_window()
            return
        if outcome is not Outcome.OK or permit.epoch != self._epoch:
            return
        self._samples.append(latency / max(1, permit.tokens) if permit.tokens is not None else latency)
        self._latencies.append(latency)
        if self._window_full():
            self._close_window()

    def _window_size(self) -> int:
        # As many samples as may be in flight (not one more: that would take a second round trip per window).
        return max(MIN_WINDOW, self.limit)

    def _window_full(self) -> bool:
        return len(self._samples) + self._window_timeouts >= self._window_size()

    def _close_window(self) -> None:
        samples, latencies, peak = self._samples, self._latencies, self._peak
        self._reset_window()
        if not samples:  # only timeouts, too few to cut: nothing to learn
            return
        ordered = sorted(latencies)
        window = _Window(self._limit, statistics.median(samples), statistics.median(ordered), ordered[0],
                         ordered[int(NEAR_TIMEOUT_PERCENTILE * (len(ordered) - 1))])
        low = min(samples)
        self._baseline = low if self._baseline is None else min(self._baseline * BASELINE_DRIFT, low)
        self._recent = window.median
        prev, self._prev_window = self._prev_window, window
        if (prev and self._limit <= prev.limit / 2 and window.median >= SHIFT_KEPT * prev.median
                and window.median > SLOW_START_TOLERANCE * self._baseline and window.one_pace):
            # Halving the limit did not lower latency: the server got slower for everyone (not a queue in front
            # of it), and cutting further would only lose throughput. Re-base on what it does now.
            self._baseline, self._shifted_p90 = low, window.p90
        if not self._near_timeout(prev, window, low):
            self._follow(window.median, peak)

    def _near_timeout(self, prev: _Window | None, window: _Window, low: float) -> bool:
        """Latency near the timeout: cut, or tell the server's own pace from a queue; True when it decided."""
        slow = window.p90
        if not (self.timeout_s and slow > self.timeout_s * TIMEOUT_FRACTION):
            self._shifted_p90 = None
            return False
        if self._shifted_p90 is not None and slow <= SHIFT_MARGIN * self._shifted_p90:
            return False  # as slow as when the cut did not help: no queue to drain
        if prev and slow >= SHIFT_JUMP * max(1.0, self._limit / prev.limit) * prev.p90:
            if not window.one_pace:  # the change came mid-window: judge it by the next one, against the last before
                self._prev_window, self._reason = prev, f"latency {slow:.1f}s (p90) jumped at the same load: kept"
                return True
            # More than a queue of this limit could add (Little's law: a queue grows with what it holds): the server's
            # new pace. Re-base on it, no cut, and scale the limit by the jump so the rate it had gets through at
            # this latency (in flight = rate x latency): the server gets no more requests per second than before,
            # where slow start would take a window of the new latency per doubling (~8 s from 4 at 1.5 s).
            self._baseline, self._shifted_p90 = low, slow
            self._set(max(self._limit, self._limit * window.latency / prev.latency),
                      f"latency {slow:.1f}s (p90) jumped {window.latency / prev.latency:.0f}x at the same load: "
                      "the server's pace, the rate kept")
            return True
        if self._limit <= FLOOR or (prev is None and window.one_pace):
            # Nothing left to cut, or a limiter's first window at one pace, not a queue's spread (one that starts in
            # a slow period never saw the server faster, so the shift tests cannot fire): take this latency as the
            # server's pace, as after a shift, and cut only if it grows past it (bench/chaos: a worker restarted in
            # the slow minute stayed at 4; one started at its siblings' 64 was halved down to 4).
            self._baseline, self._shifted_p90 = low, slow
            return False
        self._set(max(float(FLOOR), self._limit * 0.5),
                  f"latency {slow:.1f}s (p90) near the {self.timeout_s:.0f}s timeout")
        return True

    def _follow(self, recent: float, peak: int) -> None:
        """The gradient: grow while latency holds, come down as it rises past the tolerance."""
        baseline = self._baseline or recent
        gradient = max(0.5, min(1.0, self.tolerance * baseline / recent)) if recent > 0 else 1.0
        if gradient >= 1.0 and peak < self.limit:
            self._reason = "limit not reached: kept"
            return
        if recent <= SLOW_START_TOLERANCE * baseline:  # also after a slow period: recover in a few windows
            self._slow_start = True
            self._set(self._limit * 2, "latency holds")
            return
        self._slow_start = False
        if gradient >= 1.0:
            step = max(math.sqrt(self._limit) / 2, self._limit * STEADY_GROWTH)
            self._set(self._limit + step, f"latency {recent / baseline:.1f}x baseline")
            return
        target = self._limit * gradient + math.sqrt(self._limit)
        self._set((self._limit + target) / 2, f"latency {recent / baseline:.1f}x baseline")

    def _reset_window(self) -> None:
        self._samples, self._latencies, self._window_timeouts, self._peak = [], [], 0, self.in_flight

    def _set(self, value: float, reason: str) -> None:
        if value < self._limit:  # any decrease ends slow start
            self._slow_start = False
        value = min(float(self.max_limit), max(float(self.min_limit), value))
        if value < self._limit:  # replies to requests sent under the higher limit say nothing about this one
            self._epoch += 1
        if value != self._limit:
            self._reset_window()
        self._limit, self._reason = value, reason

    # -- waking ------------------------------------------------------------------------------------
    def _grant(self) -> None:
        self.in_flight += 1
        self._peak = max(self._peak, self.in_flight)

    def _may_start(self) -> bool:
        return self.in_flight < self.limit

    def _wake(self) -> None:
        while self._waiters and self._may_start():
            waiter = self._waiters.popleft()
            if waiter.done():
                continue
            self._grant()
            waiter.set_result(None)

"""The pacer of :mod:`generation.throttle`: requests/min and tokens/min, the given limit as the ceiling.

Both implementations are GCRA with reservation: ``acquire`` books the next free slot and returns how
long to sleep until it, so callers are paced proactively (no polling). The request rate is the given RPM
(the ceiling) or, without one, the rate learned from the server's 429s (:mod:`generation.ratelearn`, ramping
up from a modest pace, cut once per burst to what the server accepted, probing up slowly). ``refused`` is the
one place a 429 reaches the pacer: it holds every caller sharing it for the server's ``Retry-After`` and, for
the first refusal of a burst, cuts the rate. In-process here; shared by every worker through Redis in
:mod:`generation.ratelimit_redis`.

Holding a limit exactly: servers count requests in a window (often one second). Slots are evenly spaced
(no burst by default) and paced at ``headroom`` of the limit (0.99), and every send is logged when it goes out:
no window of the log holds more than ``floor(rate * window)`` sends, and no quarter of one more than a
quarter's share and one (:func:`room`), however late the senders woke. At a limit of 50 a second that is 49
a second: one request of slack for the time between logging a send and the server counting it (jitter up
to one slot, 20 ms, costs nothing; more may cost a 429, which holds everyone for its Retry-After). The pace
paid for it is 2% of the limit, where the old 0.97 headroom paid 4% (48 a second).

A learned rate is held the same way: the first cut paces at the headroom of what the server accepted.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from generation.ratelearn import HEADROOM, RAMP_S, LearnedRate, TimeLog


@dataclass(frozen=True)
class Rates:
    requests_per_s: float = 0.0  # 0 = no limit
    tokens_per_s: float = 0.0
    burst_s: float = 0.0  # how far ahead of the steady pace a caller may run (0: one request, evenly spaced)
    headroom: float = HEADROOM  # share of the limit actually paced at (see the module doc)
    window_s: float = 1.0  # the server's counting window: no window this long sees more than the limit's share

    @classmethod
    def per_minute(cls, rpm: int | None, tpm: int | None, burst_s: float = 0.0) -> "Rates":
        return cls((rpm or 0) / 60, (tpm or 0) / 60, burst_s)

    def paced(self) -> "Rates":
        """The rates the limiter books at: the limits times the headroom."""
        return Rates(self.requests_per_s * self.headroom, self.tokens_per_s * self.headroom, self.burst_s, 1.0,
                     self.window_s)

    @property
    def active(self) -> bool:
        return bool(self.requests_per_s or self.tokens_per_s)

    def bursts(self) -> tuple[float, float]:
        return max(1.0, self.requests_per_s * self.burst_s), max(1.0, self.tokens_per_s * self.burst_s)


class RateLimiter(Protocol):
    async def acquire(self, tokens: int) -> float:
        """Wait for a slot for one request of about ``tokens`` tokens; returns the seconds waited."""
        ...

    async def settle(self, estimated: int, actual: int) -> None:
        """Correct the token booking once the real usage is known."""
        ...

    async def refused(self, sent_age_s: float, hold_s: float) -> bool:
        """The server refused a request sent ``sent_age_s`` ago: hold every caller ``hold_s``; True when this
        cut the rate (the first refusal of a burst)."""
        ...

    async def hold(self, hold_s: float) -> None:
        """Hold every caller ``hold_s`` without learning a rate (a 503: the server is busy, not rate-limiting)."""
        ...

    def rate_state(self) -> dict[str, Any]:
        """The pace as last seen: phase, paced_rpm, learned_rpm, cuts (for status and workers)."""
        ...


def _reserve(tat: float, start: float, rate: float, burst: float, units: float) -> tuple[float, float]:
    """GCRA booking from ``start`` (now, or the end of a hold): (new theoretical arrival time, its slot)."""
    interval = 1.0 / rate
    new_tat = max(tat, start) + units * interval
    return new_tat, new_tat - burst * interval


SPREAD = 4  # the send log also caps each quarter window: late wakers catch up over a quarter, not at once


def room(sends: TimeLog, now: float, rate: float, window: float) -> float:
    """0 when a send now fits the log, else seconds until it does. Slots alone cannot stop sends that woke late
    (a busy loop, a stalled process) from bunching: no window may hold more than the rate's share, and no quarter
    of one more than a quarter's share and one (a server's burst allowance is often well under a second's worth)."""
    for span, cap in ((window, max(1, int(rate * window))), (window / SPREAD, math.ceil(rate * window / SPREAD) + 1)):
        if sends.count(now - span, now) >= cap:
            oldest = sends.oldest_after(now - span)
            return max(0.001, (oldest or now) + span - now)
    return 0.0


Book = Callable[[int], Awaitable[tuple[float, bool]]]


async def paced(book: Book, admit: Callable[[], Awaitable[float]], tokens: int) -> float:
    """Book a slot (``book`` -> seconds to it, and whether the send was already admitted), sleep to it, then
    ``admit`` the send (> 0: seconds until the send log has room; < 0: a 429's hold began meanwhile, so the
    request books a new slot after it: waking everyone at the hold's end would send them in one bunch)."""
    waited = 0.0
    while True:
        wait, admitted = await book(tokens)
        if admitted:
            return waited
        if wait > 0:
            await asyncio.sleep(wait)
            waited += wait
        while (delay := await admit()) > 0:
            await asyncio.sleep(delay)
            waited += delay
        if delay == 0:
            return waited
        tokens = 0  # its tokens are booked already


class LocalLimiter:
    """In-process pacer: thread-safe, usable from any event loop."""

    def __init__(self, rates: Rates, learn: bool = False, start_rps: float | None = None):
        self.limits, self.rates = rates, rates.paced()
        self.learned = LearnedRate(self.rates.requests_per_s, learn, start_rps)
        self._tat = [0.0, 0.0]
        self._hold_until = 0.0
        self._lock = threading.Lock()

    async def acquire(self, tokens: int) -> float:
        waited = 0.0
        while (ahead := self._unbooked()) > 0:
            await asyncio.sleep(ahead)
            waited += ahead
        return waited + await paced(self._book, self._admit, tokens)

    def _unbooked(self) -> float:
        """While ramping, a slot is booked at most one ramp step ahead: 256 requests starting at once would
        otherwise book 5 s of slots at the starting 50 a second, and keep them however fast the ramp then climbs.
        A caller with no slot yet waits a step and asks again (> 0: how long); the ramp steps while it waits."""
        with self._lock:
            now = time.monotonic()
            if self.learned.phase != "ramp" or self._tat[0] - now <= RAMP_S or now < self._hold_until:
                return 0.0
            self.learned.booked(now, True)  # the pace binds: it steps, as a booking would
            return RAMP_S

    async def _admit(self) -> float:
        """Log the send at its actual time, unless the send log has no room for it (see :func:`room`)."""
        with self._lock:
            now, rate = time.monotonic(), self.learned.rate()
            if now < self._hold_until:  # a 429 arrived while this caller slept: book again
                return -1.0
            later = room(self.learned.sends, now, rate, self.rates.window_s) if rate else 0.0
            if not later:
                self.learned.sends.add(now)
            return later

    async def _book(self, tokens: int) -> tuple[float, bool]:
        (_, tb), waits = self.rates.bursts(), [0.0]
        with self._lock:
            now = time.monotonic()
            start = max(now, self._hold_until)
            rate = self.learned.booked(now, self._tat[0] > now)
            rb = max(1.0, rate * self.rates.burst_s)
            for i, (r, burst, units) in enumerate(((rate, rb, 1), (self.rates.tokens_per_s, tb, tokens))):
                if r and units:
                    self._tat[i], slot = _reserve(self._tat[i], start, r, burst, units)
                    waits.append(slot - now)
            return (max(waits) if len(waits) > 1 else start - now), False

    async def settle(self, estimated: int, actual: int) -> None:
        if self.rates.tokens_per_s:
            with self._lock:
                self._tat[1] += (actual - estimated) / self.rates.tokens_per_s

    async def hold(self, hold_s: float) -> None:
        with self._lock:
            self._hold_until = max(self._hold_until, time.monotonic() + hold_s)

    async def refused(self, sent_age_s: float, hold_s: float) -> bool:
        with self._lock:
            now = time.monotonic()
            self._hold_until = max(self._hold_until, now + hold_s)
            return self.learned.refused(now, now - sent_age_s)

    def rate_state(self) -> dict[str, Any]:
        with self._lock:
            return self.learned.snapshot()


class NoLimit(LocalLimiter):
    """Unpaced, learning nothing; a 429 still holds every caller for its Retry-After."""

    def __init__(self) -> None:
        super().__init__(Rates(), learn=False)


def limiter_key(base_url: str | None, model: str) -> str:
    """The Redis key a teacher's limiter uses: one per endpoint and model, never the API key."""
    return f"reasongen:ratelimit:{hashlib.sha256(f'{base_url}|{model}'.encode()).hexdigest()[:16]}"


def learned_limit(redis_url: str | None, base_url: str | None, model: str) -> dict[str, Any] | None:
    """What the workers sharing Redis learned about this endpoint's rate (for ``status``); None if nothing."""
    if not redis_url:
        return None
    import redis

    from generation.ratelearn import read_learned

    client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        return read_learned(client, f"{limiter_key(base_url, model)}:pace")
    except redis.RedisError:
        return None
    finally:
        client.close()


def make_limiter(rates: Rates, redis_url: str | None = None, key: str = "reasongen:ratelimit",
                 learn: bool = False) -> RateLimiter:
    """Shared through Redis when a URL is given, in-process otherwise. With no limit given, the request rate is
    learned from the server's 429s when ``learn``; without either there is nothing to pace."""
    if not rates.active and not learn:
        return NoLimit()
    if redis_url:
        from generation.ratelimit_redis import RedisLimiter

        return RedisLimiter(rates, redis_url, key, learn=learn)
    return LocalLimiter(rates, learn=learn)

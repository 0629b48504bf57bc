"""Requests/min and tokens/min limits, shared by every worker process and host through Redis.

Both implementations are GCRA with reservation: ``acquire`` books the next free slot and returns how
long to sleep until it, so callers are paced proactively (one Redis round trip per request, no polling)
and the server's limit is never discovered through 429s. ``pause`` pushes every caller back after a 429
that slipped through anyway (another client on the same key, say). Without Redis the same arithmetic
runs in-process.

Holding a limit exactly: servers count requests in a window (often one second). Slots are evenly spaced
(no burst by default) and paced at ``headroom`` of the limit, because a request sent late on its slot (a
busy event loop) lands in the same window as the on-time ones after it: with slots every 1/r seconds and
sends up to D late, a window of W seconds can see (W + D) * r of them. At 0.97 of the limit a send may
be about 30 ms late per second of window before the server sees one too many.

When no limit is given, the limit is learned (:mod:`generation.ratelearn`): unpaced until the server
answers 429, then paced just under the rate it accepted, probing upward slowly.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Rates:
    requests_per_s: float = 0.0  # 0 = no limit
    tokens_per_s: float = 0.0
    burst_s: float = 0.0  # how far ahead of the steady pace a caller may run (0: one request, evenly spaced)
    headroom: float = 0.97  # share of the limit actually paced at (see the module doc)
    window_s: float = 1.0  # the server's counting window: no window this long sees more than the limit's share

    def window_cap(self) -> int:
        """Most requests sent in any ``window_s`` (checked on the actual send times, so late sends cannot bunch)."""
        return max(1, int(self.requests_per_s * self.window_s * self.headroom))

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

    def pause_offsets(self, seconds: float) -> list[float]:
        """How far ahead to push each booking so the next caller waits ``seconds``, burst included."""
        rates = (self.requests_per_s, self.tokens_per_s)
        return [seconds + (burst / rate if rate else 0.0) for burst, rate in zip(self.bursts(), rates)]


class RateLimiter(Protocol):
    async def acquire(self, tokens: int) -> float:
        """Wait for a slot for one request of about ``tokens`` tokens; returns the seconds waited."""
        ...

    async def settle(self, estimated: int, actual: int) -> None:
        """Correct the token booking once the real usage is known."""
        ...

    async def pause(self, seconds: float) -> None:
        """Hold every caller back for ``seconds`` (the server said so)."""
        ...


class NoLimit:
    async def acquire(self, tokens: int) -> float:
        return 0.0

    async def settle(self, estimated: int, actual: int) -> None:
        return None

    async def pause(self, seconds: float) -> None:
        return None


def _reserve(tat: float, now: float, rate: float, burst: float, units: float) -> tuple[float, float]:
    """GCRA booking: (new theoretical arrival time, seconds to wait)."""
    interval = 1.0 / rate
    new_tat = max(tat, now) + units * interval
    return new_tat, max(0.0, new_tat - burst * interval - now)


class SendLog:
    """When the last sends went out, so that no window sees more than ``cap`` of them.

    Slots alone are not enough on a busy machine: a send that wakes late (measured: up to 90 ms at load 7)
    lands in the same window as the on-time sends after it. This check runs on the actual send time.
    """

    def __init__(self, cap: int, window_s: float):
        self.cap, self.window_s = cap, window_s
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def admit(self, now: float) -> float:
        """0 when a request may go now (and it is logged), else how long until one may."""
        with self._lock:
            while self._times and self._times[0] <= now - self.window_s:
                self._times.popleft()
            if len(self._times) < self.cap:
                self._times.append(now)
                return 0.0
            return self._times[0] + self.window_s - now


async def _admitted(admit: Callable[[], Awaitable[float]]) -> float:
    waited = 0.0
    while (delay := await admit()) > 0:
        await asyncio.sleep(delay)
        waited += delay
    return waited


class LocalLimiter:
    """In-process limiter: thread-safe, usable from any event loop."""

    def __init__(self, rates: Rates):
        self.limits, self.rates = rates, rates.paced()
        self._tat = [0.0, 0.0]
        self._lock = threading.Lock()
        self._log = SendLog(rates.window_cap(), rates.window_s) if rates.requests_per_s else None

    async def acquire(self, tokens: int) -> float:
        wait = self._book(tokens)
        if wait:
            await asyncio.sleep(wait)
        if self._log is not None:
            wait += await _admitted(self._admit)
        return wait

    async def _admit(self) -> float:
        assert self._log is not None
        return self._log.admit(time.monotonic())

    def _book(self, tokens: int) -> float:
        r, (rb, tb) = self.rates, self.rates.bursts()
        now, waits = time.monotonic(), [0.0]
        with self._lock:
            for i, (rate, burst, units) in enumerate(((r.requests_per_s, rb, 1), (r.tokens_per_s, tb, tokens))):
                if rate and units:
                    self._tat[i], wait = _reserve(self._tat[i], now, rate, burst, units)
                    waits.append(wait)
        return max(waits)

    async def settle(self, estimated: int, actual: int) -> None:
        if self.rates.tokens_per_s:
            with self._lock:
                self._tat[1] += (actual - estimated) / self.rates.tokens_per_s

    async def pause(self, seconds: float) -> None:
        with self._lock:
            now = time.monotonic()
            self._tat = [max(t, now + ahead) for t, ahead in zip(self._tat, self.rates.pause_offsets(seconds))]


# KEYS: requests key, tokens key. ARGV: req rate, req burst, tok rate, tok burst, tokens.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function book(key, rate, burst, units)
  if rate <= 0 or units <= 0 then return 0 end
  local interval = 1 / rate
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local new_tat = tat + units * interval
  redis.call('SET', key, string.format('%.6f', new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 60000)
  return math.max(0, new_tat - burst * interval - now)
end
local w1 = book(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), 1)
local w2 = book(KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]))
return string.format('%.6f', math.max(w1, w2))
"""

# KEYS: send log (sorted set), sequence. ARGV: cap, window. 0 when admitted (and logged), else seconds to wait.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now, string.format('%.6f:', now) .. redis.call('INCR', KEYS[2]))
  redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000) + 1000)
  redis.call('PEXPIRE', KEYS[2], math.ceil(window * 1000) + 60000)
  return '0'
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return string.format('%.6f', tonumber(oldest[2]) + window - now)
"""

# KEYS: the keys to move. ARGV[1]: 'pause' (book each key at least ARGV[i+1] s ahead) or 'shift' (add it).
_SHIFT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key) or '0')
  local value = tonumber(ARGV[i + 1])
  local shifted
  if ARGV[1] == 'pause' then shifted = math.max(tat, now + value) else shifted = tat + value end
  if shifted > now then
    redis.call('SET', key, string.format('%.6f', shifted), 'PX', math.ceil((shifted - now) * 1000) + 60000)
  end
end
return 1
"""


class RedisLimiter:
    """The same booking in a Lua script, so every process and host sharing ``key`` shares the limits.

    Calls run in a worker thread: the sync client is loop-agnostic (the teacher runs a fresh loop per
    sub-batch) and one loopback round trip is far below a request's own latency.
    """

    def __init__(self, rates: Rates, redis_url: str, key: str):
        import redis

        self.limits, self.rates = rates, rates.paced()
        self.keys = [f"{key}:requests", f"{key}:tokens"]
        self._client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
        self._acquire = self._client.register_script(_ACQUIRE)
        self._shift = self._client.register_script(_SHIFT)
        self._admit_script = self._client.register_script(_ADMIT)
        self._log_keys = [f"{key}:sent", f"{key}:sent:seq"]

    async def acquire(self, tokens: int) -> float:
        rb, tb = self.rates.bursts()
        args = [self.rates.requests_per_s, rb, self.rates.tokens_per_s, tb, tokens]
        # The wait counts from when the answer is here, not from Redis's clock: late on a slot is safe (the
        # headroom covers it), early would put two requests where the server expects one.
        wait = float(await asyncio.to_thread(self._acquire, keys=self.keys, args=args))
        if wait:
            await asyncio.sleep(wait)
        if self.rates.requests_per_s:
            wait += await _admitted(self._admit)
        return wait

    async def _admit(self) -> float:
        args = [self.limits.window_cap(), self.limits.window_s]
        return float(await asyncio.to_thread(self._admit_script, keys=self._log_keys, args=args))

    async def settle(self, estimated: int, actual: int) -> None:
        if self.rates.tokens_per_s and actual != estimated:
            delta = (actual - estimated) / self.rates.tokens_per_s
            await asyncio.to_thread(self._shift, keys=self.keys[1:], args=["shift", delta])

    async def pause(self, seconds: float) -> None:
        await asyncio.to_thread(self._shift, keys=self.keys, args=["pause", *self.rates.pause_offsets(seconds)])


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
        return read_learned(client, f"{limiter_key(base_url, model)}:learned")
    except redis.RedisError:
        return None
    finally:
        client.close()


def make_limiter(rates: Rates, redis_url: str | None = None, key: str = "reasongen:ratelimit",
                 learn: bool = False) -> Any:
    """Redis when a URL is given, in-process otherwise; with no limit set, a learning limiter when ``learn``
    (the limit is found from the server's 429s), else nothing."""
    if not rates.active:
        if not learn:
            return NoLimit()
        from generation.ratelearn import LearnedLimiter, RedisLearnedLimiter

        return RedisLearnedLimiter(redis_url, key) if redis_url else LearnedLimiter()
    return RedisLimiter(rates, redis_url, key) if redis_url else LocalLimiter(rates)

"""Learning a server's request rate when the user gives none.

Unpaced at first (or paced at ``start_rps``). When the server answers 429, the rate it *accepted* over the
last couple of seconds (requests sent minus those refused) becomes the limit, times ``CUT``; a burst of 429s
is one cut (``COOLDOWN_S``), and every caller holds back for the server's ``Retry-After``. Without 429s the
rate creeps up by ``PROBE_STEP`` every ``PROBE_EVERY_S``, so a limit that was raised (or a cut that was too
deep) is found again, while a probe past the limit costs a few 429s, not a storm. Pacing is GCRA with one
request per slot, as in :mod:`generation.ratelimit`.

``LearnedLimiter`` is in-process; ``RedisLearnedLimiter`` keeps the learned rate, the booking and the counts
in Redis, so every worker sharing a key learns one limit together, and ``status`` can show it
(:func:`read_learned`).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

CUT = 0.95  # of the accepted rate, after a 429 burst
COOLDOWN_S = 2.0  # one cut per burst of 429s
OBSERVE_S = 2.0  # the accepted rate is measured over this span
MIN_OBSERVED_S = 1.0  # before this much traffic has been seen, a 429 only holds callers back (too early to tell)
PROBE_EVERY_S = 5.0
PROBE_STEP = 0.02
MIN_RPS = 0.2
SYNC_S = 0.1  # unpaced, a Redis learner counts sends locally and syncs this often (no round trip per request)


class LearnedRate:
    """The learning itself, with the clock passed in (pure state: no waiting, no locking)."""

    def __init__(self, start_rps: float | None = None):
        self.rps = start_rps
        self.cuts = 0
        self._cut_at = self._probed_at = -math.inf
        self._first: float | None = None
        self._sent: deque[float] = deque()
        self._refused: deque[float] = deque()

    def sent(self, now: float) -> float | None:
        """One request booked at ``now``; returns the rate to pace at (None: unpaced)."""
        self._first = now if self._first is None else self._first
        self._sent.append(now)
        self._trim(now)
        if self.rps and now - max(self._cut_at, self._probed_at) >= PROBE_EVERY_S:
            self.rps *= 1 + PROBE_STEP
            self._probed_at = now
        return self.rps

    def refused(self, now: float) -> bool:
        """The server answered 429; True when this cut the rate (the first 429 of a burst)."""
        self._refused.append(now)
        self._trim(now)
        seen = now - (self._first if self._first is not None else now)
        if now - self._cut_at < COOLDOWN_S or seen < MIN_OBSERVED_S:
            return False
        span = min(OBSERVE_S, seen)
        accepted = max(0.0, (len(self._sent) - len(self._refused)) / span)
        base = min(self.rps, accepted) if self.rps else accepted
        self.rps = max(MIN_RPS, base * CUT)
        self._cut_at, self.cuts = now, self.cuts + 1
        return True

    def _trim(self, now: float) -> None:
        for times in (self._sent, self._refused):
            while times and times[0] <= now - OBSERVE_S:
                times.popleft()


class LearnedLimiter:
    """In-process: the limiter protocol of :mod:`generation.ratelimit` over a :class:`LearnedRate`."""

    def __init__(self, start_rps: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.state = LearnedRate(start_rps)
        self._clock = clock
        self._tat = 0.0
        self._hold_until = 0.0
        self._lock = threading.Lock()

    async def acquire(self, tokens: int) -> float:
        wait = self._book()
        if wait:
            await asyncio.sleep(wait)
        return wait

    def _book(self) -> float:
        with self._lock:
            now = self._clock()
            rps = self.state.sent(now)
            start = max(now, self._hold_until)
            if not rps:
                return start - now
            slot = max(self._tat, start)
            self._tat = slot + 1.0 / rps
            return slot - now

    async def settle(self, estimated: int, actual: int) -> None:
        return None

    async def pause(self, seconds: float) -> None:
        with self._lock:
            now = self._clock()
            self._hold_until = max(self._hold_until, now + seconds)
            self.state.refused(now)

    def snapshot(self) -> dict[str, Any]:
        rps = self.state.rps
        return {"learned_rpm": round(rps * 60) if rps else None, "cuts": self.state.cuts}


# KEYS: state hash, booking key, count prefix. ARGV: probe every (s), probe step.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local sec = math.floor(now)
local sent = KEYS[3] .. ':sent:' .. sec
redis.call('INCR', sent)
redis.call('EXPIRE', sent, 10)
redis.call('HSETNX', KEYS[1], 'first', string.format('%.6f', now))
redis.call('EXPIRE', KEYS[1], 86400)
local h = redis.call('HMGET', KEYS[1], 'rps', 'cut_at', 'probed_at', 'hold_until')
local rps = tonumber(h[1] or '0') or 0
local last = math.max(tonumber(h[2] or '0') or 0, tonumber(h[3] or '0') or 0)
if rps > 0 and now - last >= tonumber(ARGV[1]) then
  rps = rps * (1 + tonumber(ARGV[2]))
  redis.call('HSET', KEYS[1], 'rps', string.format('%.6f', rps), 'probed_at', string.format('%.6f', now))
end
local start = math.max(now, tonumber(h[4] or '0') or 0)
if rps <= 0 then return string.format('%.6f', start - now) end
local slot = math.max(tonumber(redis.call('GET', KEYS[2]) or '0'), start)
local new_tat = slot + 1 / rps
redis.call('SET', KEYS[2], string.format('%.6f', new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 60000)
return string.format('%.6f', slot - now)
"""

# KEYS: as above. ARGV: pause seconds, cut, cooldown, observe span, min rps, min observed. Returns the rate after it.
_REFUSED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local sec = math.floor(now)
local refused = KEYS[3] .. ':refused:' .. sec
redis.call('INCR', refused)
redis.call('EXPIRE', refused, 10)
local h = redis.call('HMGET', KEYS[1], 'rps', 'cut_at', 'hold_until', 'first', 'cuts')
local hold = math.max(tonumber(h[3] or '0') or 0, now + tonumber(ARGV[1]))
redis.call('HSET', KEYS[1], 'hold_until', string.format('%.6f', hold))
local rps = tonumber(h[1] or '0') or 0
local first = tonumber(h[4] or '0') or now
if now - (tonumber(h[2] or '0') or 0) < tonumber(ARGV[3]) or now - first < tonumber(ARGV[6]) then
  return string.format('%.6f', rps)
end
local lo = math.floor(now - tonumber(ARGV[4]))
local span = math.max(0.05, now - math.max(lo, first))
local n_sent, n_refused = 0, 0
for s = lo, sec do
  n_sent = n_sent + (tonumber(redis.call('GET', KEYS[3] .. ':sent:' .. s) or '0') or 0)
  n_refused = n_refused + (tonumber(redis.call('GET', KEYS[3] .. ':refused:' .. s) or '0') or 0)
end
local accepted = math.max(0, (n_sent - n_refused) / span)
if rps > 0 then accepted = math.min(rps, accepted) end
rps = math.max(tonumber(ARGV[5]), accepted * tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'rps', string.format('%.6f', rps), 'cut_at', string.format('%.6f', now),
           'cuts', (tonumber(h[5] or '0') or 0) + 1)
redis.call('EXPIRE', KEYS[1], 86400)
return string.format('%.6f', rps)
"""


# KEYS: as above. ARGV: sends to add. Returns "rps hold_remaining_s".
_SYNC = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local n = tonumber(ARGV[1])
if n > 0 then
  local sent = KEYS[3] .. ':sent:' .. math.floor(now)
  redis.call('INCRBY', sent, n)
  redis.call('EXPIRE', sent, 10)
  redis.call('HSETNX', KEYS[1], 'first', string.format('%.6f', now))
  redis.call('EXPIRE', KEYS[1], 86400)
end
local h = redis.call('HMGET', KEYS[1], 'rps', 'hold_until')
local hold = math.max(0, (tonumber(h[2] or '0') or 0) - now)
return string.format('%.6f %.6f', tonumber(h[1] or '0') or 0, hold)
"""


class RedisLearnedLimiter:
    """The same learning in Redis: one learned rate for every process sharing ``key``."""

    def __init__(self, redis_url: str, key: str, start_rps: float | None = None):
        import redis

        self._client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
        self.keys = [f"{key}:learned", f"{key}:learned:tat", f"{key}:learned:count"]
        if start_rps:
            self._client.hsetnx(self.keys[0], "rps", f"{start_rps:.6f}")
        self._acquire = self._client.register_script(_ACQUIRE)
        self._refused = self._client.register_script(_REFUSED)
        self._sync_script = self._client.register_script(_SYNC)
        self._lock = threading.Lock()
        self._rps, self._hold_until, self._synced_at, self._unsynced = 0.0, 0.0, -math.inf, 0

    async def acquire(self, tokens: int) -> float:
        if time.monotonic() - self._synced_at >= SYNC_S:
            await self._sync()
        if self._rps <= 0:  # nothing learned (yet): count locally, wait only for a Retry-After hold
            with self._lock:
                self._unsynced += 1
            wait = max(0.0, self._hold_until - time.monotonic())
        else:
            wait = float(await asyncio.to_thread(self._acquire, keys=self.keys, args=[PROBE_EVERY_S, PROBE_STEP]))
        if wait > 0:
            await asyncio.sleep(wait)
        return max(0.0, wait)

    async def _sync(self) -> None:
        with self._lock:
            count, self._unsynced, self._synced_at = self._unsynced, 0, time.monotonic()
        reply = await asyncio.to_thread(self._sync_script, keys=self.keys, args=[count])
        rps, hold = (float(x) for x in (reply.decode() if isinstance(reply, bytes) else reply).split())
        self._rps, self._hold_until = rps, time.monotonic() + hold

    async def settle(self, estimated: int, actual: int) -> None:
        return None

    async def pause(self, seconds: float) -> None:
        await self._sync()  # the sends counted here so far belong to the rate this 429 measures
        args = [seconds, CUT, COOLDOWN_S, OBSERVE_S, MIN_RPS, MIN_OBSERVED_S]
        self._rps = float(await asyncio.to_thread(self._refused, keys=self.keys, args=args))
        self._hold_until = max(self._hold_until, time.monotonic() + seconds)

    def snapshot(self) -> dict[str, Any]:
        return read_learned(self._client, self.keys[0]) or {"learned_rpm": None, "cuts": 0}


def read_learned(client: Any, state_key: str) -> dict[str, Any] | None:
    """What a learning limiter found, for ``status``: None when nothing was learned under ``state_key``."""
    rps, cuts = client.hmget(state_key, "rps", "cuts")
    if rps is None:
        return None
    return {"learned_rpm": round(float(rps) * 60), "cuts": int(cuts or 0)}

"""The pacer shared by every worker process and host through Redis: the rules of the in-process one.

The same GCRA booking, send log and learned rate (:mod:`generation.ratelimit`, :mod:`generation.ratelearn`)
as Lua scripts over one key per endpoint and model, so workers sharing it pace as one client and learn one
rate. Calls go through an asyncio Redis client on the caller's own event loop: a request's booking and its
send are not separated by a thread hand-off (sends that leave late bunch at the server's window), and in the
common case booking and logging the send are one round trip.

Keys (prefix ``key``): ``:pace`` a hash (rps, phase, changed_at, cut_at, cuts, hold_until), ``:requests`` and
``:tokens`` the GCRA arrival times, ``:sent`` and ``:refused`` sorted sets of send times (Redis clock).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import Any

from generation import ratelearn as rl
from generation.ratelimit import Rates, paced

# An admission whose answer took this long is stale: the process was descheduled meanwhile, and sending now would
# bunch with the sends admitted after it. It books again; its logged send only makes the log more careful.
STALE_S = 0.05

# Shared prologue: Redis's clock, the pace hash, and the admission check (log the send unless the last window
# already holds the rate's share). ARGV[1] window, ARGV[2] keep. KEYS[1] pace, KEYS[4] sent, KEYS[6] seq.
_PROLOGUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window, keep = tonumber(ARGV[1]), tonumber(ARGV[2])
local function admit(rate)
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - keep)
  if rate > 0 then
    local cap = math.max(1, math.floor(rate * window))
    local lo = string.format('(%.6f', now - window)
    if redis.call('ZCOUNT', KEYS[4], lo, '+inf') >= cap then
      local oldest = redis.call('ZRANGEBYSCORE', KEYS[4], lo, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
      return math.max(0.001, tonumber(oldest[2]) + window - now)
    end
  end
  redis.call('ZADD', KEYS[4], now, string.format('%.6f:', now) .. redis.call('INCR', KEYS[6]))
  redis.call('PEXPIRE', KEYS[4], math.ceil(keep * 1000) + 1000)
  redis.call('PEXPIRE', KEYS[6], math.ceil(keep * 1000) + 60000)
  return 0
end
local function num(v, default) return tonumber(v or '') or default end
"""

# KEYS: pace, requests, tokens, sent, refused, seq. ARGV: window, keep, ceiling rps, learn, ramp start, ramp s,
# probe every, probe step, request burst s, token rate, token burst, tokens, plateau s, ramp factor. Returns "wait
# rate admitted phase".
_BOOK = _PROLOGUE + """
local h = redis.call('HMGET', KEYS[1], 'rps', 'phase', 'changed_at', 'hold_until', 'cut_at')
local ceiling, learn = tonumber(ARGV[3]), ARGV[4] == '1'
local rps, phase, changed = num(h[1], nil), h[2], num(h[3], 0)
if rps == nil and ceiling <= 0 and learn then
  rps, phase, changed = tonumber(ARGV[5]), 'ramp', now
  redis.call('HSET', KEYS[1], 'rps', rps, 'phase', phase, 'changed_at', now)
end
local tat = num(redis.call('GET', KEYS[2]), 0)
local settled = phase == 'ramp' or now - num(h[5], 0) >= tonumber(ARGV[13])  -- the plateau after a cut is over
if rps ~= nil and tat > now and settled then  -- the pace holds requests back: ramp (doubling) or probe (a step)
  local factor, every = 1 + tonumber(ARGV[8]), tonumber(ARGV[7])
  if phase == 'ramp' then factor, every = tonumber(ARGV[14]), tonumber(ARGV[6]) end
  if now - changed >= every then
    rps = rps * factor
    if ceiling > 0 and rps >= ceiling then
      rps = nil
      redis.call('HDEL', KEYS[1], 'rps', 'phase')
      redis.call('HSET', KEYS[1], 'changed_at', now)
    else
      redis.call('HSET', KEYS[1], 'rps', rps, 'changed_at', now)
    end
  end
end
redis.call('EXPIRE', KEYS[1], 86400)
local rate = rps or ceiling
if ceiling > 0 and rate > ceiling then rate = ceiling end
local start = math.max(now, num(h[4], 0))
local wait = start - now
local function book(key, r, burst, units, old)
  if r <= 0 or units <= 0 then return end
  local new_tat = math.max(old, start) + units / r
  redis.call('SET', key, string.format('%.6f', new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 60000)
  wait = math.max(wait, new_tat - burst / r - now)
end
book(KEYS[2], rate, math.max(1, rate * tonumber(ARGV[9])), 1, tat)
book(KEYS[3], tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12]), num(redis.call('GET', KEYS[3]), 0))
local shown = phase or (ceiling > 0 and 'ceiling' or 'off')
if rps == nil then shown = ceiling > 0 and 'ceiling' or 'off' end
if wait > 0 then return string.format('%.6f %.6f 0 %s', wait, rate, shown) end
local later = admit(rate)
return string.format('%.6f %.6f %d %s', later, rate, later > 0 and 0 or 1, shown)
"""

# KEYS: as for _BOOK. ARGV: window, keep, rate. 0 when admitted (and logged), -1 in a hold (book again), else
# seconds until the send log has room.
_ADMIT = _PROLOGUE + """
local hold = num(redis.call('HGET', KEYS[1], 'hold_until'), 0)
if hold > now then return '-1' end
return string.format('%.6f', admit(tonumber(ARGV[3])))
"""

# KEYS: as for _BOOK. ARGV: window, keep, sent age, hold s, cut, min rps, ceiling, learn, min evidence.
# Returns "new rate" (new: 1 for the first refusal of a burst; the pace is cut then unless it is the ceiling).
_REFUSED = _PROLOGUE + """
local sent_at = now - tonumber(ARGV[3])
redis.call('ZADD', KEYS[5], sent_at, string.format('%.6f:', now) .. redis.call('INCR', KEYS[6]))
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - keep)
redis.call('PEXPIRE', KEYS[5], math.ceil(keep * 1000) + 1000)
local h = redis.call('HMGET', KEYS[1], 'rps', 'cut_at', 'cuts', 'hold_until', 'phase')
redis.call('HSET', KEYS[1], 'hold_until', math.max(num(h[4], 0), now + tonumber(ARGV[4])))
local ceiling, learn = tonumber(ARGV[7]), ARGV[8] == '1'
local rate = num(h[1], ceiling)
if ceiling > 0 and rate > ceiling then rate = ceiling end
if sent_at < num(h[2], 0) + window then return string.format('0 %.6f', rate) end
redis.call('HSET', KEYS[1], 'cut_at', now)
if h[1] == false or (ceiling <= 0 and not learn) then return string.format('1 %.6f', rate) end  -- trusted
local lo = string.format('(%.6f', sent_at - window)
local accepted = redis.call('ZCOUNT', KEYS[4], lo, sent_at) - redis.call('ZCOUNT', KEYS[5], lo, sent_at)
local oldest = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
if h[5] == 'ramp' and accepted < tonumber(ARGV[9]) and (oldest[2] == nil or tonumber(oldest[2]) > sent_at - window) then
  redis.call('HSET', KEYS[1], 'changed_at', now + window)  -- too early to tell: a hold, no ramping for a while
  return string.format('1 %.6f', rate)
end
accepted = math.max(0, accepted) / window
if h[5] == 'ramp' and (rate <= 0 or accepted < rate) then rate = accepted end  -- later bursts: CUT only
rate = math.max(tonumber(ARGV[6]), rate * tonumber(ARGV[5]))
redis.call('HSET', KEYS[1], 'rps', rate, 'phase', 'learned', 'changed_at', now, 'cuts', num(h[3], 0) + 1)
redis.call('EXPIRE', KEYS[1], 86400)
return string.format('1 %.6f', rate)
"""


# KEYS: as for _BOOK. ARGV: hold seconds. Every caller sharing the pace waits at least that long.
_HOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local hold = tonumber(redis.call('HGET', KEYS[1], 'hold_until') or '0') or 0
redis.call('HSET', KEYS[1], 'hold_until', math.max(hold, now + tonumber(ARGV[1])))
redis.call('EXPIRE', KEYS[1], 86400)
return 1
"""


class RedisLimiter:
    """The pacer over Redis: one pace for every process sharing ``key`` (see the module doc)."""

    def __init__(self, rates: Rates, redis_url: str, key: str, learn: bool = False):
        self.limits, self.rates, self.learn = rates, rates.paced(), learn
        self.redis_url = redis_url
        self.keys = [f"{key}:pace", f"{key}:requests", f"{key}:tokens", f"{key}:sent", f"{key}:refused",
                     f"{key}:seq"]
        self._clients: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._rate, self._cuts, self._phase = 0.0, 0, "ramp" if learn and not rates.requests_per_s else "ceiling"

    def _scripts(self) -> Any:
        """The async client and scripts of the running loop (a connection cannot cross loops)."""
        loop = asyncio.get_running_loop()
        if loop not in self._clients:
            import redis.asyncio as aioredis

            client = aioredis.Redis.from_url(self.redis_url, socket_timeout=5, socket_connect_timeout=5)
            self._clients[loop] = (client, *(client.register_script(s) for s in (_BOOK, _ADMIT, _REFUSED, _HOLD)))
        return self._clients[loop]

    def _common(self) -> list[Any]:
        return [self.rates.window_s, rl.KEEP_S]

    async def acquire(self, tokens: int) -> float:
        return await paced(self._book, self._admit, tokens)

    async def _book(self, tokens: int) -> tuple[float, bool]:
        book = self._scripts()[1]
        _, tb = self.rates.bursts()
        args = [*self._common(), self.rates.requests_per_s, int(self.learn), rl.RAMP_START_RPS, rl.RAMP_S,
                rl.PROBE_EVERY_S, rl.PROBE_STEP, self.rates.burst_s, self.rates.tokens_per_s, tb,
                tokens, rl.PLATEAU_S, rl.RAMP_FACTOR]
        asked = time.monotonic()
        wait, rate, admitted, phase = (await book(keys=self.keys, args=args)).split()
        # The wait counts from when the answer is here, not from Redis's clock: late on a slot is safe (the
        # headroom and the send log cover it), early would put two requests where the server expects one.
        self._rate, self._phase = float(rate), phase.decode()
        return float(wait), admitted == b"1" and time.monotonic() - asked < STALE_S

    async def _admit(self) -> float:
        admit = self._scripts()[2]
        asked = time.monotonic()
        delay = float(await admit(keys=self.keys, args=[*self._common(), self._rate]))
        return -1.0 if delay == 0 and time.monotonic() - asked >= STALE_S else delay

    async def settle(self, estimated: int, actual: int) -> None:
        if self.rates.tokens_per_s and actual != estimated:
            client = self._scripts()[0]
            await client.incrbyfloat(self.keys[2], (actual - estimated) / self.rates.tokens_per_s)

    async def refused(self, sent_age_s: float, hold_s: float) -> bool:
        script = self._scripts()[3]
        args = [*self._common(), max(0.0, sent_age_s), hold_s, rl.CUT, rl.MIN_RPS, self.rates.requests_per_s,
                int(self.learn), rl.MIN_EVIDENCE]
        new, rate = (await script(keys=self.keys, args=args)).split()
        burst = bool(new == b"1")
        if burst and self._phase in ("ramp", "learned"):
            self._cuts, self._phase = self._cuts + 1, "learned"
        self._rate = float(rate)
        return burst

    async def hold(self, hold_s: float) -> None:
        await self._scripts()[4](keys=self.keys, args=[hold_s])

    def rate_state(self) -> dict[str, Any]:
        """As this process last saw it (status reads the shared hash: :func:`generation.ratelimit.learned_limit`)."""
        learned = self._rate if self._phase == "learned" else None
        return {"phase": self._phase, "paced_rpm": round(self._rate * 60) if self._rate else None,
                "learned_rpm": round(learned * 60) if learned else None, "cuts": self._cuts}

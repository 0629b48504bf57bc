"""The pacer shared by every worker process and host through Redis: the rules of the in-process one.

The same GCRA booking, send log and learned rate (:mod:`generation.ratelimit`, :mod:`generation.ratelearn`)
as Lua scripts over one key per endpoint and model, so workers sharing it pace as one client and learn one
rate. Calls go through an asyncio Redis client on the caller's own event loop: a request's booking and its
send are not separated by a thread hand-off (sends that leave late bunch at the server's window), and in the
common case booking and logging the send are one round trip.

Leases: while the pace only ramps (no RPM given, no 429 ever seen on the key), holds nobody back and the last
window's sends stay under ``NEAR`` of it, a round trip books up to ``LEASE_MAX`` slots at once, logged in the
send log at their slot times (a first cut counts them as sent), and the event loop that asked spends them
(spaced at the pace) for ``LEASE_S``, then gives the unsent ones back with its next round trip. A pace that
binds, a hold, a 429 anywhere (``cut_at`` set), or tokens to count: one booking per request, as before, so a
burst is still decided once, in Redis, for every process. A 429 or 503 seen here voids this process's leases at
once; another process's run out within ``LEASE_S``.

Keys (prefix ``key``): ``:pace`` a hash (rps, phase, changed_at, cut_at, cuts, hold_until), ``:requests`` and
``:tokens`` the GCRA arrival times, ``:sent`` and ``:refused`` sorted sets of send times (Redis clock).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from dataclasses import dataclass
from typing import Any

from generation import ratelearn as rl
from generation.ratelimit import Rates, paced

# An admission whose answer took this long is stale: the process was descheduled meanwhile, and sending now would
# bunch with the sends admitted after it. It books again; its logged send only makes the log more careful.
STALE_S = 0.05
MIN_SLEEP_S = 0.001

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
local function give_back(id, from, n)  -- a lease's permits never sent leave the send log
  if id == '-' then return end
  local members = {}
  for i = tonumber(from), tonumber(n) - 1 do members[#members + 1] = id .. ':' .. i end
  if #members > 0 then redis.call('ZREM', KEYS[4], unpack(members)) end
end
"""

# KEYS: pace, requests, tokens, sent, refused, seq. ARGV: window, keep, ceiling rps, learn, ramp start, ramp s,
# probe every, probe step, request burst s, token rate, token burst, tokens, plateau s, ramp factor, near, lease
# wanted, lease s, then a lease given back (id or '-', first unsent permit, permits). Returns "wait rate admitted
# phase permits lease_id" (permits > 1: a lease, admitted and logged at its slots).
_BOOK = _PROLOGUE + """
local h = redis.call('HMGET', KEYS[1], 'rps', 'phase', 'changed_at', 'hold_until', 'cut_at')
local ceiling, learn = tonumber(ARGV[3]), ARGV[4] == '1'
local rps, phase, changed = num(h[1], nil), h[2], num(h[3], 0)
if rps == nil and ceiling <= 0 and learn then
  rps, phase, changed = tonumber(ARGV[5]), 'ramp', now
  redis.call('HSET', KEYS[1], 'rps', rps, 'phase', phase, 'changed_at', now)
end
give_back(ARGV[18], ARGV[19], ARGV[20])
local tat = num(redis.call('GET', KEYS[2]), 0)
local ramp_factor, ramp_s, near = tonumber(ARGV[14]), tonumber(ARGV[6]), tonumber(ARGV[15])
local recent = 0  -- sends in the last window (the ramp's: it steps on while they near the pace, leases while not)
if rps ~= nil and phase == 'ramp' then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - keep)
  recent = redis.call('ZCOUNT', KEYS[4], string.format('(%.6f', now - window), '+inf')
end
local binding = tat > now or (rps ~= nil and phase == 'ramp' and recent >= near * rps * window)
local settled = phase == 'ramp' or now - num(h[5], 0) >= tonumber(ARGV[13])  -- the plateau after a cut is over
if rps ~= nil and binding and settled then  -- the pace holds requests back: ramp (a factor) or probe (a step)
  local factor, every = 1 + tonumber(ARGV[8]), tonumber(ARGV[7])
  if phase == 'ramp' then factor, every = ramp_factor, ramp_s end
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
local shown = phase or (ceiling > 0 and 'ceiling' or 'off')
if rps == nil then shown = ceiling > 0 and 'ceiling' or 'off' end
-- A lease: the ramp, no 429 ever seen on this key, no hold, no tokens to count, the pace neither holding anyone
-- back nor neared by the sends: n slots booked and logged at once, spent by the caller's process.
local want = tonumber(ARGV[16])
if want > 1 and rps ~= nil and phase == 'ramp' and h[5] == false and wait <= 0 and tonumber(ARGV[10]) <= 0 and tat <= now then
  local n = math.min(want, math.floor(rate * tonumber(ARGV[17])))
  if n > 1 and recent + n < near * rate * window then
    local id, members = 'l' .. redis.call('INCR', KEYS[6]), {}
    for i = 0, n - 1 do
      members[#members + 1] = now + i / rate
      members[#members + 1] = id .. ':' .. i
    end
    redis.call('ZADD', KEYS[4], unpack(members))
    redis.call('PEXPIRE', KEYS[4], math.ceil(keep * 1000) + 1000)
    redis.call('PEXPIRE', KEYS[6], math.ceil(keep * 1000) + 60000)
    redis.call('SET', KEYS[2], string.format('%.6f', now + n / rate), 'PX', math.ceil(n / rate * 1000) + 60000)
    return string.format('0 %.6f 1 %s %d %s', rate, shown, n, id)
  end
end
local function book(key, r, burst, units, old)
  if r <= 0 or units <= 0 then return end
  local new_tat = math.max(old, start) + units / r
  redis.call('SET', key, string.format('%.6f', new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 60000)
  wait = math.max(wait, new_tat - burst / r - now)
end
book(KEYS[2], rate, math.max(1, rate * tonumber(ARGV[9])), 1, tat)
book(KEYS[3], tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12]), num(redis.call('GET', KEYS[3]), 0))
if wait > 0 then return string.format('%.6f %.6f 0 %s 1 -', wait, rate, shown) end
local later = admit(rate)
return string.format('%.6f %.6f %d %s 1 -', later, rate, later > 0 and 0 or 1, shown)
"""

# KEYS: as for _BOOK. ARGV: window, keep, rate. 0 when admitted (and logged), -1 in a hold (book again), else
# seconds until the send log has room.
_ADMIT = _PROLOGUE + """
local hold = num(redis.call('HGET', KEYS[1], 'hold_until'), 0)
if hold > now then return '-1' end
return string.format('%.6f', admit(tonumber(ARGV[3])))
"""

# KEYS: as for _BOOK. ARGV: window, keep, sent age, hold s, cut, min rps, ceiling, learn, min evidence, then a
# lease given back (as for _BOOK). Returns "new rate" (new: 1 for the first refusal of a burst; the pace is cut
# then unless it is the ceiling).
_REFUSED = _PROLOGUE + """
give_back(ARGV[10], ARGV[11], ARGV[12])
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


@dataclass
class _Lease:
    """Slots booked and logged in one round trip, spent by one event loop (see the module doc)."""

    id: str
    count: int
    start: float  # this process's clock when the answer came
    interval: float
    epoch: int
    used: int = 1  # the request that asked for it takes the first

    def take(self, now: float, epoch: int) -> float | None:
        """Seconds to the next slot, or None once spent, expired, or cut off by a 429 or 503 (``epoch``)."""
        if self.used >= self.count or epoch != self.epoch or now >= self.start + rl.LEASE_S:
            return None
        slot = self.start + self.used * self.interval
        self.used += 1
        return max(0.0, slot - now)

    def given_back(self) -> list[Any]:
        """The lease's unsent slots, as the scripts take them (none: ``-``)."""
        return [self.id, self.used, self.count]


_NO_LEASE = ["-", 0, 0]


@dataclass
class _Asking:
    """One event loop's lease: at most one request asks for the next at a time (the others wait for its answer
    while leases are granted; they book alone, concurrently, once they are not)."""

    lease: _Lease | None = None
    answered: asyncio.Event | None = None  # set while a request asks
    leasing: bool = False  # the last answer was a lease
    want: int = rl.LEASE_MIN

    def give_back(self) -> list[Any]:
        """The last lease's unsent slots, for the next script; the next lease is twice what it sent."""
        lease, self.lease = self.lease, None
        if lease is None:
            return _NO_LEASE
        self.want = max(rl.LEASE_MIN, min(rl.LEASE_MAX, 2 * lease.used))
        return lease.given_back()


class RedisLimiter:
    """The pacer over Redis: one pace for every process sharing ``key`` (see the module doc)."""

    def __init__(self, rates: Rates, redis_url: str, key: str, learn: bool = False):
        self.limits, self.rates, self.learn = rates, rates.paced(), learn
        self.redis_url = redis_url
        self.keys = [f"{key}:pace", f"{key}:requests", f"{key}:tokens", f"{key}:sent", f"{key}:refused",
                     f"{key}:seq"]
        self._clients: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._asking: weakref.WeakKeyDictionary[Any, _Asking] = weakref.WeakKeyDictionary()
        self._epoch = 0  # bumped by a 429 or 503: every lease taken before it is void
        self._rate, self._cuts, self._phase = 0.0, 0, "ramp" if learn and not rates.requests_per_s else "ceiling"
        # Only a ramp leases (a pace no 429 has confirmed), and slots for tokens are booked one request at a time.
        self._may_lease = learn and not rates.requests_per_s and not rates.tokens_per_s

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
        if not self._may_lease:
            return await paced(self._book, self._admit, tokens)
        loop = asyncio.get_running_loop()
        asking = self._asking.get(loop) or self._asking.setdefault(loop, _Asking())
        while True:
            if asking.lease is not None and (wait := asking.lease.take(time.monotonic(), self._epoch)) is not None:
                if wait >= MIN_SLEEP_S:  # shorter sleeps cost a loop turn and leave no later than sends at once
                    await asyncio.sleep(wait)
                return wait
            if asking.answered is None or not asking.leasing:
                break
            await asking.answered.wait()  # one round trip for the whole loop: the next lease or "book alone"
        if asking.answered is not None:  # another request is asking; leases are not coming: book alone
            return await paced(self._book, self._admit, tokens)
        answered = asking.answered = asyncio.Event()
        try:
            return await paced(lambda t: self._book(t, asking), self._admit, tokens)
        finally:
            if asking.answered is answered:
                asking.answered = None
            answered.set()

    async def _book(self, tokens: int, asking: _Asking | None = None) -> tuple[float, bool]:
        book = self._scripts()[1]
        _, tb = self.rates.bursts()
        asks = asking is not None and asking.answered is not None
        lease = [asking.want if asks else 1, rl.LEASE_S, *(asking.give_back() if asks else _NO_LEASE)]
        args = [*self._common(), self.rates.requests_per_s, int(self.learn), rl.RAMP_START_RPS, rl.RAMP_S,
                rl.PROBE_EVERY_S, rl.PROBE_STEP, self.rates.burst_s, self.rates.tokens_per_s, tb,
                tokens, rl.PLATEAU_S, rl.RAMP_FACTOR, rl.NEAR, *lease]
        asked = time.monotonic()
        wait, rate, admitted, phase, permits, lease_id = (await book(keys=self.keys, args=args)).split()
        # The wait counts from when the answer is here, not from Redis's clock: late on a slot is safe (the
        # headroom and the send log cover it), early would put two requests where the server expects one.
        self._rate, self._phase = float(rate), phase.decode()
        if asks and asking is not None:
            self._answered(asking, int(permits), lease_id.decode(), 1 / float(rate) if float(rate) else 0.0)
        return float(wait), admitted == b"1" and time.monotonic() - asked < STALE_S

    def _answered(self, asking: _Asking, permits: int, lease_id: str, interval: float) -> None:
        """A lease (or none) came: the loop's other requests stop waiting for it."""
        asking.leasing = permits > 1
        if asking.leasing:
            asking.lease = _Lease(lease_id, permits, time.monotonic(), interval, self._epoch)
        if asking.answered is not None:
            asking.answered.set()
            asking.answered = None

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
        self._epoch += 1  # every lease of this process is void; this loop's unsent slots leave the log first
        asking = self._asking.get(asyncio.get_running_loop())
        script = self._scripts()[3]
        args = [*self._common(), max(0.0, sent_age_s), hold_s, rl.CUT, rl.MIN_RPS, self.rates.requests_per_s,
                int(self.learn), rl.MIN_EVIDENCE, *(asking.give_back() if asking else _NO_LEASE)]
        new, rate = (await script(keys=self.keys, args=args)).split()
        burst = bool(new == b"1")
        if burst and self._phase in ("ramp", "learned"):
            self._cuts, self._phase = self._cuts + 1, "learned"
        self._rate = float(rate)
        return burst

    async def hold(self, hold_s: float) -> None:
        self._epoch += 1
        await self._scripts()[4](keys=self.keys, args=[hold_s])

    def rate_state(self) -> dict[str, Any]:
        """As this process last saw it (status reads the shared hash: :func:`generation.ratelimit.learned_limit`)."""
        learned = self._rate if self._phase == "learned" else None
        return {"phase": self._phase, "paced_rpm": round(self._rate * 60) if self._rate else None,
                "learned_rpm": round(learned * 60) if learned else None, "cuts": self._cuts}

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
from generation.ratelimit_scripts import ADMIT, BOOK, HOLD, REFUSED

# An admission whose answer took this long is stale: the process was descheduled meanwhile, and sending now would
# bunch with the sends admitted after it. It books again; its logged send only makes the log more careful.
STALE_S = 0.05
MIN_SLEEP_S = 0.001


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
POOL_SIZE = 16  # connections to Redis per event loop: a script takes well under a millisecond


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

            # A blocking pool: hundreds of requests booking at once wait for one of a few connections (the default
            # pool raises "Too many connections" past 100, which a teacher with 256 places reaches at its start).
            pool = aioredis.BlockingConnectionPool.from_url(self.redis_url, max_connections=POOL_SIZE, timeout=None,
                                                            socket_timeout=5, socket_connect_timeout=5)
            client = aioredis.Redis.from_pool(pool)
            self._clients[loop] = (client, *(client.register_script(s) for s in (BOOK, ADMIT, REFUSED, HOLD)))
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
            return await paced(lambda t: self._book(t, asking, answered), self._admit, tokens)
        finally:
            if asking.answered is answered:
                asking.answered = None
            answered.set()

    async def _book(self, tokens: int, asking: _Asking | None = None,
                    answered: asyncio.Event | None = None) -> tuple[float, bool]:
        """Book one slot, or (``asking``: this request asks for its loop, and is still the one asking) a lease."""
        book = self._scripts()[1]
        _, tb = self.rates.bursts()
        mine = asking if asking is not None and answered is not None and asking.answered is answered else None
        lease = [mine.want, rl.LEASE_S, *mine.give_back()] if mine is not None else [1, rl.LEASE_S, *_NO_LEASE]
        args = [*self._common(), self.rates.requests_per_s, int(self.learn), rl.RAMP_START_RPS, rl.RAMP_S,
                rl.PROBE_EVERY_S, rl.PROBE_STEP, self.rates.burst_s, self.rates.tokens_per_s, tb,
                tokens, rl.PLATEAU_S, rl.RAMP_FACTOR, rl.NEAR, *lease]
        asked = time.monotonic()
        wait, rate, admitted, phase, permits, lease_id = (await book(keys=self.keys, args=args)).split()
        # The wait counts from when the answer is here, not from Redis's clock: late on a slot is safe (the
        # headroom and the send log cover it), early would put two requests where the server expects one.
        self._rate, self._phase = float(rate), phase.decode()
        if mine is not None:
            self._answered(mine, int(permits), lease_id.decode(), 1 / float(rate) if float(rate) else 0.0)
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
                int(self.learn), rl.MIN_EVIDENCE, *(asking.give_back() if asking else _NO_LEASE), rl.HEADROOM,
                rl.DOUBT_S]
        new, rate, cut = (await script(keys=self.keys, args=args)).split()
        burst = bool(new == b"1")
        if cut == b"1":
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

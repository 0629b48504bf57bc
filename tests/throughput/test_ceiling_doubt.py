"""A given limit is trusted once: a second 429 burst soon after the first paces below it, then probes back up.

Sends that leave late on a loaded machine (or another client on the same key) make a server refuse requests the
pacer admitted under the limit the user gave. One such burst is held for its Retry-After and forgotten; a second
within ``DOUBT_S`` cuts the pace as a learned one would be cut, in-process and in Redis alike.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis

from generation.ratelearn import CUT, DOUBT_S, OBSERVE_S, PLATEAU_S, PROBE_EVERY_S, LearnedRate
from generation.ratelimit import Rates
from generation.ratelimit_redis import RedisLimiter

GIVEN = 49.5  # 3,000/min at the pacer's headroom


def _sent(state: LearnedRate, until: float) -> None:
    for i in range(int(until * GIVEN)):
        state.sends.add(i / GIVEN)


def test_a_second_burst_under_a_given_limit_cuts_the_pace():
    state = LearnedRate(ceiling_rps=GIVEN, learn=True)
    _sent(state, 20.0)
    assert state.refused(5.0, 4.98)  # the first burst: held, trusted
    assert state.rate() == GIVEN and state.phase == "ceiling" and state.cuts == 0
    assert state.refused(12.0, 11.98)  # a second one 7 s later: the limit does not hold here
    assert state.phase == "learned" and state.cuts == 1
    assert state.rate() == pytest.approx(GIVEN * CUT)
    assert state.snapshot()["learned_rpm"] == round(GIVEN * CUT * 60)  # status shows what it paces at


def test_bursts_further_apart_than_the_doubt_window_are_each_trusted():
    state = LearnedRate(ceiling_rps=GIVEN, learn=True)
    _sent(state, 3 * DOUBT_S)
    for at in (5.0, 5.0 + DOUBT_S + 1, 5.0 + 2 * DOUBT_S + 2):
        assert state.refused(at, at - 0.02)
    assert state.rate() == GIVEN and state.cuts == 0


def test_with_learning_off_a_given_limit_is_never_cut():
    state = LearnedRate(ceiling_rps=GIVEN, learn=False)
    _sent(state, 20.0)
    for at in (5.0, 7.0, 9.0, 11.0):
        assert state.refused(at, at - 0.02)
    assert state.rate() == GIVEN and state.phase == "ceiling"


def test_the_cut_probes_back_up_to_the_given_limit_never_past_it():
    state = LearnedRate(ceiling_rps=GIVEN, learn=True)
    _sent(state, 10.0)
    state.refused(5.0, 4.98)
    state.refused(7.0, 6.98)
    now = 7.0
    state.booked(now + PLATEAU_S - 1, binding=True)
    assert state.rate() == pytest.approx(GIVEN * CUT)  # the plateau first
    while state.phase != "ceiling":
        now += PROBE_EVERY_S / 5
        state.booked(now, binding=True)
        assert state.rate() <= GIVEN
    assert state.rate() == GIVEN and now - 7.0 < PLATEAU_S + 4 * PROBE_EVERY_S


def test_workers_sharing_redis_doubt_a_given_limit_together(redis_url):
    key = f"test:doubt:{uuid.uuid4().hex}"
    a, b = (RedisLimiter(Rates.per_minute(3000, None), redis_url, key, learn=True) for _ in range(2))

    async def scenario() -> tuple[bool, bool, dict[str, object]]:
        for _ in range(10):
            await a.acquire(0)
            await b.acquire(0)
        first = await a.refused(0.0, 0.01)  # held and trusted
        cut_after_first = a.rate_state()["cuts"]
        await asyncio.sleep(OBSERVE_S + 0.05)  # the next refusal is of a send after the first burst's window
        await b.acquire(0)
        second = await b.refused(0.0, 0.01)  # the other worker's: the same key, so the same doubt
        return first and cut_after_first == 0, second, b.rate_state()

    try:
        trusted_once, second, seen = asyncio.run(scenario())
        pace = redis.Redis.from_url(redis_url).hgetall(f"{key}:pace")
        assert trusted_once and second
        assert pace[b"phase"] == b"learned" and int(pace[b"cuts"]) == 1
        assert float(pace[b"rps"]) == pytest.approx(50 * 0.99 * CUT, rel=1e-6)
        assert seen["phase"] == "learned" and seen["cuts"] == 1
    finally:
        client = redis.Redis.from_url(redis_url)
        for k in client.scan_iter(match=f"{key}*"):
            client.delete(k)


def test_a_redis_given_limit_with_learning_off_is_never_cut(redis_url):
    key = f"test:doubt:{uuid.uuid4().hex}"
    limiter = RedisLimiter(Rates.per_minute(3000, None), redis_url, key, learn=False)

    async def scenario() -> None:
        for _ in range(3):
            await limiter.acquire(0)
            await limiter.refused(0.0, 0.01)
            await asyncio.sleep(OBSERVE_S + 0.05)

    try:
        started = time.monotonic()
        asyncio.run(scenario())
        assert time.monotonic() - started < DOUBT_S
        pace = redis.Redis.from_url(redis_url).hgetall(f"{key}:pace")
        assert b"rps" not in pace and limiter.rate_state()["phase"] == "ceiling"
    finally:
        client = redis.Redis.from_url(redis_url)
        for k in client.scan_iter(match=f"{key}*"):
            client.delete(k)

"""The throttle's one reaction to overload: a 429 burst is one cut of the concurrency limit and one cut of the
pace, every caller is held for Retry-After, and workers sharing Redis learn one pace (generation/throttle.py)."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import openai
import redis

from generation.concurrency import Permit
from generation.ratelimit import LocalLimiter, NoLimit, Rates
from generation.ratelimit_redis import RedisLimiter
from generation.throttle import Throttle


def too_many(retry_after_ms: int | None = None) -> openai.RateLimitError:
    headers = {"retry-after-ms": str(retry_after_ms)} if retry_after_ms is not None else {}
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx.Response(429, headers=headers, request=request)
    return openai.RateLimitError("Rate limit reached for requests", response=response, body=None)


async def _traffic(throttle: Throttle, n: int, gap_s: float = 0.0) -> None:
    """``n`` requests the server accepted (the pace learns from what was accepted)."""
    for _ in range(n):
        permit = await throttle.acquire(0)
        await throttle.succeeded(permit, 0, None)
        if gap_s:
            await asyncio.sleep(gap_s)


async def _burst(throttle: Throttle, n: int, retry_after_ms: int = 1) -> None:
    """``n`` requests sent together, every one refused."""
    await _refuse(throttle, [await throttle.acquire(0) for _ in range(n)], retry_after_ms)


async def _refuse(throttle: Throttle, permits: list[Permit], retry_after_ms: int = 1) -> None:
    for permit in permits:
        await throttle.failed(permit, too_many(retry_after_ms))


def test_a_429_burst_is_exactly_one_cut_across_both_dimensions() -> None:
    throttle = Throttle(64, initial=32, pacer=LocalLimiter(Rates(), learn=True, start_rps=400))

    async def main() -> list[tuple[int, int, int]]:  # (concurrency limit, pace cuts, bursts)
        await _traffic(throttle, 30, gap_s=0.01)
        seen = []
        await _burst(throttle, 20)  # twenty refusals of requests sent together: one burst
        state = throttle.snapshot()
        assert state is not None
        seen.append((state.limit, state.pace["cuts"], state.bursts))
        await _burst(throttle, 5)  # sent right after the cut: the server's window still counts the old traffic
        state = throttle.snapshot()
        assert state is not None
        seen.append((state.limit, state.pace["cuts"], state.bursts))
        await asyncio.sleep(1.05)
        await _traffic(throttle, 10)
        await _burst(throttle, 5)  # sent a second after the cut: the new pace and limit were too much too
        state = throttle.snapshot()
        assert state is not None
        seen.append((state.limit, state.pace["cuts"], state.bursts))
        return seen

    first, same, second = asyncio.run(main())
    assert first == (24, 1, 1), first  # 32 * 0.75, one pace cut, one burst
    assert same == (24, 1, 1), same
    assert second == (18, 2, 2), second
    state = throttle.snapshot()
    assert state is not None and state.overloads == 30 and state.pace["phase"] == "learned"
    assert state.pace["learned_rpm"] and "learned from 429s" in state.describe()


def test_retry_after_holds_every_caller_once_in_the_pacer() -> None:
    throttle = Throttle(8, initial=8, pacer=NoLimit())

    async def main() -> float:
        permit = await throttle.acquire(0)
        await throttle.failed(permit, too_many(300))
        started = time.monotonic()
        await asyncio.gather(*(_traffic(throttle, 1) for _ in range(4)))  # other callers, not only the refused one
        return time.monotonic() - started

    assert asyncio.run(main()) >= 0.29
    state = throttle.snapshot()
    assert state is not None and state.limit == 6 and state.bursts == 1 and state.pace["cuts"] == 0


def test_two_workers_sharing_redis_cut_the_pace_once_per_burst(redis_url) -> None:
    key = f"test:throttle:{uuid.uuid4().hex}"
    a, b = (Throttle(64, initial=16, pacer=RedisLimiter(Rates(), redis_url, key, learn=True)) for _ in range(2))

    async def main() -> None:
        await asyncio.gather(_traffic(a, 30, gap_s=0.02), _traffic(b, 30, gap_s=0.02))
        sent = await asyncio.gather(*(asyncio.gather(*(t.acquire(0) for _ in range(6))) for t in (a, b)))
        await asyncio.gather(_refuse(a, sent[0]), _refuse(b, sent[1]))  # both workers see the same burst

    try:
        asyncio.run(main())
        shared = redis.Redis.from_url(redis_url).hgetall(f"{key}:pace")
        assert shared[b"phase"] == b"learned" and int(shared[b"cuts"]) == 1, shared  # one shared pace cut
        states = [t.snapshot() for t in (a, b)]
        assert sorted((s.limit, s.bursts) for s in states if s) == [(12, 1), (16, 0)]  # one cut in all
        rpm = float(shared[b"rps"]) * 60
        assert 0 < rpm < 2 * 60 * 60  # about what both sent together (~2 x 30 req/s at most), times the cut
    finally:
        client = redis.Redis.from_url(redis_url)
        for k in client.scan_iter(match=f"{key}*"):
            client.delete(k)


def test_a_503_holds_and_cuts_the_concurrency_but_teaches_the_pace_nothing() -> None:
    throttle = Throttle(64, initial=16, pacer=LocalLimiter(Rates(), learn=True, start_rps=100))
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    busy = openai.InternalServerError("Service Unavailable", body=None,
                                      response=httpx.Response(503, headers={"retry-after-ms": "200"}, request=request))

    async def main() -> float:
        await _traffic(throttle, 20, gap_s=0.01)
        permits = [await throttle.acquire(0) for _ in range(5)]  # an outage: every request answered 503
        for permit in permits:
            await throttle.failed(permit, busy)
        started = time.monotonic()
        await _traffic(throttle, 1)
        return time.monotonic() - started

    assert asyncio.run(main()) >= 0.15
    state = throttle.snapshot()
    assert state is not None and state.limit == 12 and state.bursts == 1 and state.overloads == 5
    assert state.pace["cuts"] == 0 and state.pace["paced_rpm"] >= 6000  # the pace is not cut

import asyncio
import subprocess
import sys
import time
import uuid

import pytest
import redis

from generation.ratelimit import LocalLimiter, NoLimit, Rates, make_limiter
from generation.ratelimit_redis import RedisLimiter


async def _pace(limiter, n, tokens=0):
    start = time.monotonic()
    await asyncio.gather(*(limiter.acquire(tokens) for _ in range(n)))
    return time.monotonic() - start


def test_local_limiter_paces_requests_after_a_small_burst():
    limiter = LocalLimiter(Rates(requests_per_s=100, burst_s=0.05))  # burst of 5
    elapsed = asyncio.run(_pace(limiter, 25))
    assert 0.18 <= elapsed < 0.5  # (25 - 5) / 100 s


def test_local_limiter_counts_tokens_and_settles():
    limiter = LocalLimiter(Rates(tokens_per_s=1000, burst_s=0.01))
    elapsed = asyncio.run(_pace(limiter, 3, tokens=100))
    assert 0.25 <= elapsed < 0.6
    asyncio.run(limiter.settle(estimated=100, actual=50))
    assert asyncio.run(_pace(limiter, 1, tokens=10)) < 0.05 + 0.3


def test_make_limiter_picks_the_implementation(redis_url):
    assert isinstance(make_limiter(Rates()), NoLimit)
    assert isinstance(make_limiter(Rates(requests_per_s=1)), LocalLimiter)
    assert isinstance(make_limiter(Rates(requests_per_s=1), redis_url, "k"), RedisLimiter)


def test_a_429_in_one_process_holds_everyone_sharing_redis_back(redis_url):
    key = f"test:rl:{uuid.uuid4().hex}"
    a, b = (RedisLimiter(Rates(requests_per_s=1000), redis_url, key) for _ in range(2))
    try:
        asyncio.run(a.refused(0.0, 0.3))  # a's request was refused with Retry-After: 0.3 s
        assert asyncio.run(_pace(b, 1)) >= 0.25
    finally:
        client = redis.Redis.from_url(redis_url)
        for k in client.scan_iter(match=f"{key}*"):
            client.delete(k)


@pytest.mark.slow
def test_two_processes_share_one_limit_through_redis(stub, redis_url):
    url, handle = stub(rps_limit=25, rps_burst=10)
    key, count = f"test:rl:{uuid.uuid4().hex}", 30
    cmd = [sys.executable, "-m", "tests.generation.limiter_worker", url, redis_url, key, str(count), "25"]
    start = time.monotonic()
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        failed = [int(p.communicate(timeout=60)[0]) for p in procs]
    finally:
        client = redis.Redis.from_url(redis_url)
        for k in client.scan_iter(match=f"{key}*"):
            client.delete(k)
    elapsed = time.monotonic() - start
    stats = handle.stats()
    # Each process alone would send at 25/s: together 50/s against a server allowing 25/s with a burst of 10
    # (room for scheduling jitter on a busy machine, far below the 25 extra requests a second).
    assert failed == [0, 0] and stats.get("status_429", 0) == 0, stats
    assert stats["status_200"] == 2 * count and elapsed >= (2 * count - 13) / 25


def _max_in_window(times, window=1.0):  # type: ignore[no-untyped-def]
    import bisect

    times = sorted(times)
    return max(bisect.bisect_left(times, t + window) - i for i, t in enumerate(times))


def test_no_one_second_window_sees_more_than_the_limit():
    """A server counting per one-second window must never see more than its limit from us, burst or not."""
    limiter = LocalLimiter(Rates(requests_per_s=20))
    sent = []

    async def one() -> None:
        await limiter.acquire(0)
        sent.append(time.monotonic())

    async def run() -> None:
        await asyncio.gather(*(one() for _ in range(45)))

    asyncio.run(run())
    assert _max_in_window(sent) <= 20
    assert (max(sent) - min(sent)) <= 45 / (20 * 0.9)  # and still close to the limit


def test_sends_that_wake_late_cannot_bunch_into_one_window():
    """Slots booked for 5/s, but every sender woke late at once: the send log still lets 5 through a second."""
    limiter = LocalLimiter(Rates(requests_per_s=5 / 0.97))
    sent = []

    async def one(slot_wait: float) -> None:
        await asyncio.sleep(slot_wait)
        while (delay := await limiter._admit()) > 0:  # the send-time check alone, as after a slot that woke late
            await asyncio.sleep(delay)
        sent.append(time.monotonic())

    async def run() -> None:
        await asyncio.gather(*(one(0.05) for _ in range(8)))

    asyncio.run(run())
    assert _max_in_window(sent) <= 5


def _count_round_trips(limiter: RedisLimiter) -> list[int]:
    """Counts the commands ``limiter`` sends to Redis on the running loop (each one a round trip)."""
    client, calls = limiter._scripts()[0], [0]
    send = client.execute_command

    async def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls[0] += 1
        return await send(*args, **kwargs)

    client.execute_command = counted
    return calls


def _ramped(redis_url: str, key: str) -> None:
    """A pace that ramped far above what the test sends (as after a while against a fast server)."""
    redis.Redis.from_url(redis_url).hset(f"{key}:pace", mapping={"rps": 100_000, "phase": "ramp", "changed_at": 0})


async def _send(limiter, n: int, tasks: int = 16) -> None:  # type: ignore[no-untyped-def]
    """``n`` requests from ``tasks`` senders, through a pacer or a throttle (the server accepts them all)."""
    left = [n]

    async def one() -> None:
        while left[0] > 0:
            left[0] -= 1
            permit = await limiter.acquire(0)
            if not isinstance(limiter, RedisLimiter):
                await limiter.succeeded(permit, 0, None)
            await asyncio.sleep(0.01)

    await asyncio.gather(*(one() for _ in range(tasks)))


def test_a_pace_far_above_the_sends_is_booked_in_leases_not_per_request(redis_url):
    key, n = f"test:rl:{uuid.uuid4().hex}", 400
    _ramped(redis_url, key)
    a, b = (RedisLimiter(Rates(), redis_url, key, learn=True) for _ in range(2))

    async def scenario() -> list[int]:
        counts = [_count_round_trips(a), _count_round_trips(b)]
        await asyncio.gather(_send(a, n), _send(b, n))
        return [c[0] for c in counts]

    try:
        trips = asyncio.run(scenario())
        assert max(trips) < n / 4, trips  # one round trip per lease of slots, not one (or two) per request
        logged = redis.Redis.from_url(redis_url).zcard(f"{key}:sent")
        assert logged >= 2 * n  # every send is in the shared log (a 429's cut counts them)
    finally:
        client = redis.Redis.from_url(redis_url)
        for k in client.scan_iter(match=f"{key}*"):
            client.delete(k)


def test_a_429_burst_ends_every_process_s_leases_and_cuts_once(redis_url):
    from generation import ratelearn
    from generation.throttle import Throttle

    key = f"test:rl:{uuid.uuid4().hex}"
    _ramped(redis_url, key)
    pacers = [RedisLimiter(Rates(), redis_url, key, learn=True) for _ in range(2)]
    a, b = (Throttle(64, initial=16, pacer=p) for p in pacers)
    limits: list[int] = []

    async def scenario() -> list[int]:
        await asyncio.gather(_send(a, 200), _send(b, 200))  # both lease
        limits.append(a.snapshot().limit)
        sent = [await a.acquire(0) for _ in range(4)]
        for permit in sent:  # a's requests refused: one burst
            await a.failed(permit, _too_many())
        await asyncio.sleep(ratelearn.LEASE_S)  # b's last lease runs out (b heard of no 429 itself)
        counts = [_count_round_trips(p) for p in pacers]
        await asyncio.gather(_send(pacers[0], 20, tasks=4), _send(pacers[1], 20, tasks=4))
        return [c[0] for c in counts]

    try:
        trips = asyncio.run(scenario())
        shared = redis.Redis.from_url(redis_url).hgetall(f"{key}:pace")
        assert shared[b"phase"] == b"learned" and int(shared[b"cuts"]) == 1, shared
        assert [t.bursts for t in (a, b)] == [1, 0] and a.snapshot().limit < limits[0]  # one cut in all
        assert min(trips) >= 20, trips  # each request books with the shared pace again, in both processes
        assert [p.rate_state()["phase"] for p in pacers] == ["learned", "learned"]
    finally:
        client = redis.Redis.from_url(redis_url)
        for k in client.scan_iter(match=f"{key}*"):
            client.delete(k)


def _too_many():  # type: ignore[no-untyped-def]
    import httpx
    import openai

    response = httpx.Response(429, headers={"retry-after-ms": "1"},
                              request=httpx.Request("POST", "http://127.0.0.1/v1/chat/completions"))
    return openai.RateLimitError("Rate limit reached for requests", response=response, body=None)


def test_sends_that_wake_late_catch_up_over_a_quarter_window_not_at_once():
    """20/s, and 30 senders all woke late at once: at most a quarter's share and one go out in any 0.25 s (a
    server's burst allowance is often well under a second's worth), and the second's share is still sent."""
    limiter = LocalLimiter(Rates(requests_per_s=20))
    sent = []

    async def one() -> None:
        await asyncio.sleep(0.05)
        while (delay := await limiter._admit()) > 0:  # the send-time check alone, as after slots that woke late
            await asyncio.sleep(delay)
        sent.append(time.monotonic())

    async def run() -> None:
        await asyncio.gather(*(one() for _ in range(30)))

    asyncio.run(run())
    assert _max_in_window(sent, 0.25) <= 6  # ceil(19.8 / 4) + 1; the old log let all 19 through at once
    assert _max_in_window(sent) == 19

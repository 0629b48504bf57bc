import asyncio
import subprocess
import sys
import time
import uuid

import pytest
import redis

from generation.ratelimit import LocalLimiter, NoLimit, Rates, RedisLimiter, make_limiter


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


def test_redis_limiter_pause_holds_everyone_back(redis_url):
    key = f"test:rl:{uuid.uuid4().hex}"
    a, b = (RedisLimiter(Rates(requests_per_s=1000), redis_url, key) for _ in range(2))
    asyncio.run(a.pause(0.3))
    assert asyncio.run(_pace(b, 1)) >= 0.25


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
        redis.Redis.from_url(redis_url).delete(f"{key}:ready", f"{key}:requests", f"{key}:tokens")
    elapsed = time.monotonic() - start
    stats = handle.stats()
    # Each process alone would send at 25/s: together 50/s against a server allowing 25/s with a burst of 10
    # (room for scheduling jitter on a busy machine, far below the 25 extra requests a second).
    assert failed == [0, 0] and stats.get("status_429", 0) == 0, stats
    assert stats["status_200"] == 2 * count and elapsed >= (2 * count - 13) / 25

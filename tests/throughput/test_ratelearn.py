"""Learning a server's rate limit from its 429s: cut to what it accepted, hold for Retry-After, probe up."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis

from generation.ratelearn import CUT, PROBE_EVERY_S, PROBE_STEP, LearnedLimiter, LearnedRate, RedisLearnedLimiter
from generation.ratelimit import NoLimit, Rates, make_limiter


def _simulate(state: LearnedRate, seconds: float, limit: float, offered: float = 500.0) -> list[tuple[float, bool]]:
    """A client offering ``offered``/s, paced by ``state``, holding 1 s after a 429 (Retry-After), against a
    server's token bucket of one second at ``limit``/s. Returns (time, refused) per request."""
    bucket, at, t, hold, tat, log = limit, 0.0, 0.0, 0.0, 0.0, []
    while t < seconds:
        t = max(t + 1 / offered, hold)
        if state.rps:
            t = max(t, tat)
            tat = t + 1 / state.rps
        state.sent(t)
        bucket, at = min(limit, bucket + (t - at) * limit), t
        if bucket >= 1:
            bucket -= 1
            log.append((t, False))
        else:
            state.refused(t)
            hold = t + 1.0
            log.append((t, True))
    return log


def test_unpaced_until_a_429_then_just_under_what_the_server_accepted():
    state = LearnedRate()
    assert state.sent(0.0) is None  # nothing learned yet: no pacing at all
    log = _simulate(state, 40.0, limit=50)
    assert state.cuts >= 1 and 50 * 0.9 <= state.rps <= 50 * 1.05
    late = [refused for t, refused in log if t >= 10]
    assert sum(late) / len(late) <= 0.01  # once learned, hardly a 429
    assert len(late) / 30 >= 0.93 * 50  # and close to the limit


def test_a_burst_of_429s_is_one_cut():
    state = LearnedRate(start_rps=100)
    for i in range(200):
        state.sent(i * 0.01)
    for i in range(30):  # thirty refusals within the cooldown
        state.refused(2.0 + i * 0.01)
    assert state.cuts == 1


def test_probes_upward_slowly_without_429s():
    state = LearnedRate(start_rps=10)
    now = 0.0
    while now < 3 * PROBE_EVERY_S + 0.01:
        state.sent(now)
        now += 0.1
    assert state.rps == pytest.approx(10 * (1 + PROBE_STEP) ** 3)


def test_make_limiter_learns_only_when_asked_and_no_limit_is_given(redis_url):
    assert isinstance(make_limiter(Rates()), NoLimit)
    assert isinstance(make_limiter(Rates(), learn=True), LearnedLimiter)
    assert isinstance(make_limiter(Rates(), redis_url, f"test:learn:{uuid.uuid4().hex}", learn=True),
                      RedisLearnedLimiter)
    assert not isinstance(make_limiter(Rates(requests_per_s=5), learn=True), LearnedLimiter)  # a given limit holds


def test_the_in_process_learner_honours_retry_after():
    limiter = LearnedLimiter()

    async def scenario() -> float:
        await limiter.acquire(0)
        await limiter.pause(0.3)  # a 429 with Retry-After: 0.3 s, too early to learn a rate from
        return await limiter.acquire(0)

    assert asyncio.run(scenario()) >= 0.25
    assert limiter.snapshot() == {"learned_rpm": None, "cuts": 0}


def test_workers_sharing_redis_learn_one_limit(redis_url):
    key = f"test:learn:{uuid.uuid4().hex}"
    a, b = (RedisLearnedLimiter(redis_url, key) for _ in range(2))

    async def scenario() -> None:
        for _ in range(20):
            await a.acquire(0)
            await b.acquire(0)
            await asyncio.sleep(0.06)  # over a second of traffic: enough to learn from
        await a.pause(0.01)

    try:
        asyncio.run(scenario())
        learned = b.snapshot()
        assert learned["cuts"] == 1 and learned["learned_rpm"] > 0
        waits = asyncio.run(_waits(b, 3))  # b now paces at the rate a's 429 taught
        assert waits[-1] > 0
    finally:
        client = redis.Redis.from_url(redis_url)
        for k in client.scan_iter(match=f"{key}*"):
            client.delete(k)


async def _waits(limiter, n):  # type: ignore[no-untyped-def]
    return [await limiter.acquire(0) for _ in range(n)]


def test_status_shows_the_learned_limit(pg_url, redis_url):
    from typer.testing import CliRunner

    from cli.main import app
    from generation.ratelimit import limiter_key
    from reasongen.bootstrap import bootstrap
    from reasongen.settings import Settings
    from tests.helpers import add_records
    from workers.planning import BatchRequest, plan_batch

    endpoint = f"http://127.0.0.1:9/{uuid.uuid4().hex[:6]}/v1"  # never contacted: planning does not send
    settings = Settings(database_url=pg_url, broker_url=None, openai_base_url=endpoint, redis_url=redis_url)
    wired = bootstrap(settings)
    key = limiter_key(endpoint, settings.teacher_model)
    try:
        with wired.uow() as uow:
            add_records(uow, "ds", [{"instruction": "Question?", "key": "k0"}])
        planned = plan_batch(wired, BatchRequest(dataset="ds", backend="teacher"))
        learner = RedisLearnedLimiter(redis_url, key)

        async def learn() -> None:  # a second and a half of traffic, then a 429
            for _ in range(30):
                await learner.acquire(0)
                await asyncio.sleep(0.05)
            await learner.pause(0.01)

        asyncio.run(learn())
        env = {"REASONGEN_DATABASE_URL": pg_url, "REASONGEN_REDIS_URL": redis_url, "OPENAI_BASE_URL": endpoint}
        result = CliRunner().invoke(app, ["status", str(planned.batch_id)], env=env)
        assert result.exit_code == 0, result.output
        rpm = learner.snapshot()["learned_rpm"]
        assert rpm and f"teacher rate limit learned from 429s: {rpm:,} requests/min" in " ".join(result.output.split())
    finally:
        wired.close()
        client = redis.Redis.from_url(redis_url)
        for k in client.scan_iter(match=f"{key}*"):
            client.delete(k)

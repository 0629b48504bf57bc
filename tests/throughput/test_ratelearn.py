"""Learning a server's rate limit from its 429s: cut to what it accepted, hold for Retry-After, probe up."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis

from generation.ratelearn import CUT, HEADROOM, PROBE_EVERY_S, PROBE_STEP, RAMP_START_RPS, LearnedRate
from generation.ratelimit import LocalLimiter, NoLimit, Rates, make_limiter
from generation.ratelimit_redis import RedisLimiter


def _simulate(state: LearnedRate, seconds: float, limit: float, offered: float = 500.0) -> list[tuple[float, bool]]:
    """A client offering ``offered``/s, paced by ``state`` (evenly spaced slots), holding for Retry-After after a
    429, against a server admitting ``limit`` requests in any one-second window. Returns (time, refused) each."""
    accepted: list[float] = []
    t, hold, tat, log = 0.0, 0.0, 0.0, []
    while t < seconds:
        t = max(t + 1 / offered, hold)
        rate = state.booked(t, tat > t)
        if rate:
            t = max(t, tat)
            tat = t + 1 / rate
        state.sends.add(t)
        accepted = [a for a in accepted if a > t - 1.0]
        if len(accepted) < limit:
            accepted.append(t)
            log.append((t, False))
        else:
            state.refused(t, t)
            hold = accepted[0] + 1.0  # the server's Retry-After: until the oldest leaves its window
            log.append((t, True))
    return log


def test_ramps_from_a_pace_then_holds_just_under_what_the_server_accepted():
    state = LearnedRate()
    assert state.phase == "ramp" and state.rate() == RAMP_START_RPS  # paced from the start: no unpaced burst
    log = _simulate(state, 30.0, limit=50)
    assert state.cuts >= 1 and 50 * 0.9 <= state.rate() <= 50 * 1.05
    assert sum(refused for _, refused in log) / len(log) <= 0.01  # learning cost hardly a 429
    late = [refused for t, refused in log if t >= 5]
    assert len(late) - sum(late) >= 0.95 * 50 * 25  # and it holds >= 0.95 of the limit


def test_a_burst_of_429s_is_one_cut():
    state = LearnedRate(start_rps=100)
    for i in range(200):
        state.sends.add(i * 0.01)
    for i in range(30):  # thirty refusals of requests sent before the first one was answered
        state.refused(2.0 + i * 0.01, 1.99)
    assert state.cuts == 1
    assert not state.refused(2.5, 2.4)  # sent after the cut, but the server's window still held the old traffic
    assert state.refused(3.5, 3.1) and state.cuts == 2  # sent a window after the cut: a new burst


def test_probes_upward_slowly_while_the_pace_binds():
    state = LearnedRate(start_rps=10)
    now = 0.0
    while now < 3 * PROBE_EVERY_S + 0.5:
        state.booked(now, binding=True)
        now += 0.1
    assert state.rps == pytest.approx(10 * (1 + PROBE_STEP) ** 3)
    state.booked(now + PROBE_EVERY_S, binding=False)  # a pace nobody reaches is not raised
    assert state.rps == pytest.approx(10 * (1 + PROBE_STEP) ** 3)


def test_a_given_limit_is_the_ceiling_and_trusted():
    state = LearnedRate(ceiling_rps=48.5)
    assert state.phase == "ceiling" and state.rate() == 48.5
    for i in range(100):
        state.sends.add(i * 0.02)
    assert state.refused(2.0, 1.99)  # a new burst (the concurrency is cut once), but the given limit stays
    assert state.rate() == 48.5 and state.cuts == 0
    state.booked(10.0, binding=True)
    assert state.rate() == 48.5  # and is never probed past


def test_a_learned_pace_probes_back_up_to_the_ceiling_never_past_it():
    state = LearnedRate(ceiling_rps=48.5, start_rps=40)
    now = 0.0
    while state.phase != "ceiling":
        now += 0.1
        state.booked(now, binding=True)
        assert state.rate() <= 48.5
    assert state.rate() == 48.5


def test_make_limiter_learns_only_when_asked(redis_url):
    assert isinstance(make_limiter(Rates()), NoLimit)
    local = make_limiter(Rates(), learn=True)
    assert isinstance(local, LocalLimiter) and local.rate_state()["phase"] == "ramp"
    assert isinstance(make_limiter(Rates(), redis_url, f"test:learn:{uuid.uuid4().hex}", learn=True), RedisLimiter)
    given = make_limiter(Rates(requests_per_s=5), learn=True)
    assert isinstance(given, LocalLimiter) and given.rate_state()["phase"] == "ceiling"


def test_the_in_process_pacer_honours_retry_after():
    limiter = LocalLimiter(Rates(), learn=True)

    async def scenario() -> float:
        await limiter.acquire(0)
        await limiter.refused(0.0, 0.3)  # a 429 with Retry-After: 0.3 s
        return await limiter.acquire(0)

    assert asyncio.run(scenario()) >= 0.25


def test_workers_sharing_redis_learn_one_limit(redis_url):
    key = f"test:learn:{uuid.uuid4().hex}"
    a, b = (RedisLimiter(Rates(), redis_url, key, learn=True) for _ in range(2))

    async def scenario() -> list[float]:
        for _ in range(20):
            await a.acquire(0)
            await b.acquire(0)
            await asyncio.sleep(0.05)  # 40 req/s together
        assert await a.refused(0.0, 0.01)
        return [await b.acquire(0) for _ in range(4)]

    try:
        waits = asyncio.run(scenario())
        learned = redis.Redis.from_url(redis_url).hgetall(f"{key}:pace")
        assert learned[b"phase"] == b"learned" and int(learned[b"cuts"]) == 1
        assert 20 <= float(learned[b"rps"]) <= 45  # what both sent together in the last second, times the cut
        assert sum(waits) > 0  # b now paces at the rate a's 429 taught
    finally:
        client = redis.Redis.from_url(redis_url)
        for k in client.scan_iter(match=f"{key}*"):
            client.delete(k)


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
        learner = RedisLimiter(Rates(), redis_url, key, learn=True)

        async def learn() -> None:  # a second and a half of traffic, then a 429
            for _ in range(30):
                await learner.acquire(0)
                await asyncio.sleep(0.05)
            await learner.refused(0.0, 0.01)

        asyncio.run(learn())
        env = {"REASONGEN_DATABASE_URL": pg_url, "REASONGEN_REDIS_URL": redis_url, "OPENAI_BASE_URL": endpoint}
        result = CliRunner().invoke(app, ["status", str(planned.batch_id)], env=env)
        assert result.exit_code == 0, result.output
        rpm = learner.rate_state()["learned_rpm"]
        assert rpm and f"teacher rate limit learned from 429s: {rpm:,} requests/min" in " ".join(result.output.split())
    finally:
        wired.close()
        client = redis.Redis.from_url(redis_url)
        for k in client.scan_iter(match=f"{key}*"):
            client.delete(k)


def test_workers_show_the_limit_and_the_learned_pace(pg_url, redis_url):
    from sqlalchemy import update

    from generation.ratelimit import limiter_key
    from reasongen.bootstrap import bootstrap
    from reasongen.settings import Settings
    from storage.models import Batch
    from tests.helpers import add_records
    from workers import monitor
    from workers.batches import utcnow
    from workers.planning import BatchRequest, plan_batch

    endpoint = f"http://127.0.0.1:9/{uuid.uuid4().hex[:6]}/v1"  # never contacted
    settings = Settings(database_url=pg_url, broker_url=None, openai_base_url=endpoint, redis_url=redis_url)
    wired = bootstrap(settings)
    key = limiter_key(endpoint, settings.teacher_model)
    try:
        with wired.uow() as uow:
            add_records(uow, "ds", [{"instruction": f"Q{i}?", "key": f"k{i}"} for i in range(2)])
        planned = plan_batch(wired, BatchRequest(dataset="ds", backend="teacher"))
        with wired.uow() as uow:
            uow.session.execute(update(Batch).where(Batch.id == planned.batch_id).values(concurrency_limit=9))
            uow.heartbeats.beat("busy", utcnow(), queues=["teacher"], concurrency=4, pid=1,
                                current_chunk_id=planned.chunk_ids[0])
            uow.commit()
        learner = RedisLimiter(Rates(), redis_url, key, learn=True)

        async def learn() -> None:
            for _ in range(30):
                await learner.acquire(0)
                await asyncio.sleep(0.05)
            await learner.refused(0.0, 0.01)

        asyncio.run(learn())
        busy = {w["hostname"]: w for w in monitor.workers_report(wired)["workers"]}["busy"]
        rpm = learner.rate_state()["learned_rpm"]
        assert rpm and busy["teacher_limit"] == 9 and busy["teacher_learned_rpm"] == rpm, busy
    finally:
        wired.close()
        client = redis.Redis.from_url(redis_url)
        for k in client.scan_iter(match=f"{key}*"):
            client.delete(k)


def test_the_first_cut_keeps_one_request_of_slack_under_what_the_server_accepted():
    """50 accepted in the second before the refused send: paced at 49.5/s, so 49 sends a window, not 48."""
    state = LearnedRate()
    for i in range(75):  # the ramp's last second: 75 sent, 25 of them refused (the last at 2.0)
        state.sends.add(1.0 + (i + 1) / 75)
    state._refused = [1.5 + i / 50 for i in range(24)]  # refusals already answered within this burst
    assert state.refused(2.01, 2.0) and state.cuts == 1
    assert state.rate() == pytest.approx(50 * HEADROOM) and int(state.rate()) == 49


@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "redis"])
def test_a_given_limit_is_held_to_its_last_request_a_window(shared, request):
    """3,000/min against a server counting 50 a second: 49 go out in any second (one of slack for jitter)."""
    rates = Rates.per_minute(3000, None)
    limiter = RedisLimiter(rates, request.getfixturevalue("redis_url"), f"test:slack:{uuid.uuid4().hex}") if shared \
        else LocalLimiter(rates)
    sent: list[float] = []

    async def one() -> None:
        await limiter.acquire(0)
        sent.append(time.monotonic())

    async def run() -> None:
        await asyncio.gather(*(one() for _ in range(110)))

    asyncio.run(run())
    if shared:  # the log of admitted sends, on Redis's clock (the caller's clock adds its own round trips)
        sent = [score for _, score in redis.Redis.from_url(limiter.redis_url).zrange(limiter.keys[3], 0, -1,
                                                                                      withscores=True)]
    assert len(sent) >= 110  # an admission answered too late to use is logged, and the send admitted again
    assert max(sum(1 for u in sent if t <= u < t + 1.0) for t in sent) == 49  # never 50; 48 was the old pace


def test_a_ramp_is_not_held_to_the_pace_it_started_from():
    """300 requests at once and no limit given: the ramp climbs while they wait (the old pacer booked them all at
    its starting 50 a second, 6 s of slots, however fast the ramp climbed after)."""
    limiter = LocalLimiter(Rates(), learn=True)
    sent: list[float] = []

    async def one() -> None:
        await limiter.acquire(0)
        sent.append(time.monotonic())

    async def run() -> float:
        start = time.monotonic()
        await asyncio.gather(*(one() for _ in range(300)))
        return start

    start = asyncio.run(run())
    assert max(sent) - start < 1.5  # 50, 75, 112... a second: about 0.9 s for 300 (6 s at the starting pace)
    assert sum(1 for t in sent if t - start < 0.1) <= RAMP_START_RPS * 0.1 + 2  # and still paced from the start

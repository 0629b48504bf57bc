"""The adaptive concurrency limiter against simulated servers on the event loop (no HTTP: the rules only)."""

from __future__ import annotations

import asyncio
import time

import pytest

from generation.concurrency import AdaptiveConcurrency, Outcome


class Server:
    """``lanes`` requests computed at once (1: a server that queues), each taking ``service_s``."""

    def __init__(self, lanes: int, service_s: float):
        self.lanes, self.service_s = asyncio.Semaphore(lanes), service_s
        self.in_flight = self.peak = self.done = 0

    async def call(self) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            async with self.lanes:
                await asyncio.sleep(self.service_s)
        finally:
            self.in_flight -= 1
            self.done += 1


async def drive(limiter: AdaptiveConcurrency, server: Server, requests: int, timeout_s: float = 30) -> list[int]:
    limits: list[int] = []

    async def one() -> None:
        async with limiter.slot() as permit:
            try:
                await asyncio.wait_for(server.call(), timeout_s)
            except TimeoutError:
                permit.record(Outcome.TIMEOUT)
                return
            permit.record(Outcome.OK, tokens=10)
            limits.append(limiter.limit)

    await asyncio.gather(*(one() for _ in range(requests)))
    return limits


def test_a_server_that_queues_keeps_the_limit_low() -> None:
    async def main() -> tuple[AdaptiveConcurrency, Server]:
        limiter, server = AdaptiveConcurrency(64, initial=4), Server(lanes=1, service_s=0.03)
        await drive(limiter, server, 240)
        return limiter, server

    limiter, server = asyncio.run(main())
    # Latency may reach 4x the baseline: the queue settles a few requests deep (about 7), far from 64.
    assert limiter.limit <= 12, limiter.snapshot()
    assert server.peak <= 24  # never 64 requests waiting in the server's queue
    assert limiter.snapshot().phase == "steady"


def test_a_server_that_batches_lets_the_limit_grow_to_the_maximum() -> None:
    async def main() -> tuple[AdaptiveConcurrency, Server]:
        limiter, server = AdaptiveConcurrency(64, initial=4), Server(lanes=1000, service_s=0.02)
        await drive(limiter, server, 600)
        return limiter, server

    limiter, server = asyncio.run(main())
    assert limiter.limit >= 48, limiter.snapshot()
    assert server.peak >= 48


def test_a_limit_never_filled_is_not_grown() -> None:
    async def main() -> AdaptiveConcurrency:
        limiter, server = AdaptiveConcurrency(64, initial=4), Server(lanes=1000, service_s=0.005)
        for _ in range(20):  # two at a time: the limit of 4 is never reached
            await drive(limiter, server, 2)
        return limiter

    limiter = asyncio.run(main())
    assert limiter.limit == 4


def test_a_burst_of_timeouts_is_one_decrease() -> None:
    async def main() -> AdaptiveConcurrency:
        limiter = AdaptiveConcurrency(64, initial=32)
        permits = [await limiter.acquire() for _ in range(20)]
        for permit in permits:
            limiter.release(permit, Outcome.TIMEOUT)
        return limiter

    limiter = asyncio.run(main())
    assert limiter.limit == 16
    assert limiter.snapshot().timeouts == 20
    assert "timed out" in limiter.snapshot().reason


def test_a_429_cuts_the_limit_and_retry_after_holds_every_caller() -> None:
    async def main() -> tuple[AdaptiveConcurrency, float]:
        limiter = AdaptiveConcurrency(64, initial=8)
        permit = await limiter.acquire()
        limiter.release(permit, Outcome.OVERLOAD, retry_after_s=0.3)
        started = time.monotonic()
        async with limiter.slot() as permit:
            permit.record(Outcome.OK)
        return limiter, time.monotonic() - started

    limiter, waited = asyncio.run(main())
    assert limiter.limit == 6
    assert waited >= 0.29


def test_latency_near_the_timeout_cuts_the_limit() -> None:
    async def main() -> AdaptiveConcurrency:
        limiter, server = AdaptiveConcurrency(64, initial=16, timeout_s=0.2), Server(lanes=1, service_s=0.01)
        await drive(limiter, server, 16)  # the last of 16 queued requests waits ~0.16 s > half the timeout
        return limiter

    limiter = asyncio.run(main())
    assert limiter.limit <= 8
    assert "near the" in limiter.snapshot().reason


def test_fixed_mode_is_a_semaphore_of_the_maximum() -> None:
    async def main() -> tuple[AdaptiveConcurrency, Server]:
        limiter, server = AdaptiveConcurrency(5, initial=1, adaptive=False), Server(lanes=1000, service_s=0.01)
        await drive(limiter, server, 50)
        return limiter, server

    limiter, server = asyncio.run(main())
    assert limiter.limit == 5 and server.peak == 5
    assert limiter.snapshot().phase == "fixed"


def test_a_cancelled_waiter_gives_its_place_back() -> None:
    async def main() -> AdaptiveConcurrency:
        limiter = AdaptiveConcurrency(1, adaptive=False)
        held = await limiter.acquire()
        waiter = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        limiter.release(held, Outcome.OK)
        async with limiter.slot() as permit:
            permit.record(Outcome.OK)
        return limiter

    limiter = asyncio.run(main())
    assert limiter.in_flight == 0


def test_an_escaping_timeout_is_classified() -> None:
    async def main() -> AdaptiveConcurrency:
        limiter = AdaptiveConcurrency(8, initial=8)
        with pytest.raises(TimeoutError):
            async with limiter.slot():
                raise TimeoutError
        return limiter

    limiter = asyncio.run(main())
    assert limiter.limit == 4 and limiter.in_flight == 0

"""The adaptive concurrency limiter against simulated servers on the event loop (no HTTP: the rules only)."""

from __future__ import annotations

import asyncio
import heapq
import pytest

from generation.concurrency import AdaptiveConcurrency, Outcome


class Server:
    """``lanes`` requests computed at once (1: a server that queues), each taking ``service_s``.

    Time is virtual (the limiter reads ``clock``), so the test does not depend on how busy the machine is:
    a driver advances the clock to the next finishing request once every task is waiting.
    """

    def __init__(self, lanes: int, service_s: float):
        self.lanes, self.service_s = [0.0] * lanes, service_s
        self.now = 0.0
        self.in_flight = self.peak = self.done = 0
        self._finishing: list[tuple[float, int, asyncio.Future[None]]] = []

    def clock(self) -> float:
        return self.now

    async def call(self) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        lane = min(range(len(self.lanes)), key=self.lanes.__getitem__)
        finish = max(self.now, self.lanes[lane]) + self.service_s
        self.lanes[lane] = finish
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._finishing, (finish, id(done), done))
        try:
            await done
        finally:
            self.in_flight -= 1
            self.done += 1

    async def run_clock(self, work: asyncio.Future[object]) -> None:
        while not work.done():
            for _ in range(50):  # let every ready task run before time moves on
                await asyncio.sleep(0)
            if self._finishing:
                self.now, _, done = heapq.heappop(self._finishing)
                done.set_result(None)


async def drive(limiter: AdaptiveConcurrency, server: Server, requests: int, timeout_s: float = 30) -> None:
    async def one() -> None:
        async with limiter.slot() as permit:
            started = server.now
            await server.call()
            permit.record(Outcome.TIMEOUT if server.now - started > timeout_s else Outcome.OK)

    work = asyncio.gather(*(one() for _ in range(requests)))
    await server.run_clock(work)
    await work


def test_a_server_that_queues_keeps_the_limit_low() -> None:
    async def main() -> tuple[AdaptiveConcurrency, Server]:
        server = Server(lanes=1, service_s=1.0)
        limiter = AdaptiveConcurrency(64, initial=4, clock=server.clock)
        await drive(limiter, server, 300, timeout_s=120)
        return limiter, server

    limiter, server = asyncio.run(main())
    # Latency may reach 4x the baseline: the queue settles a few requests deep (about 7), far from 64.
    assert limiter.limit <= 10, limiter.snapshot()
    assert server.peak <= 16  # never 64 requests waiting in the server's queue
    assert limiter.snapshot().phase == "steady" and limiter.timeouts == 0


def test_a_server_that_batches_lets_the_limit_grow_to_the_maximum() -> None:
    async def main() -> tuple[AdaptiveConcurrency, Server]:
        server = Server(lanes=1000, service_s=1.0)
        limiter = AdaptiveConcurrency(64, initial=4, clock=server.clock)
        await drive(limiter, server, 600)
        return limiter, server

    limiter, server = asyncio.run(main())
    assert limiter.limit == 64, limiter.snapshot()
    assert server.peak == 64


def test_a_limit_never_filled_is_not_grown() -> None:
    async def main() -> AdaptiveConcurrency:
        server = Server(lanes=1000, service_s=0.005)
        limiter = AdaptiveConcurrency(64, initial=4, clock=server.clock)
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


def test_a_cut_is_once_per_burst() -> None:
    """The throttle's 429 reaction (generation/throttle.py) cuts through ``cut``: once per epoch."""

    async def main() -> tuple[AdaptiveConcurrency, list[bool]]:
        limiter = AdaptiveConcurrency(64, initial=32)
        permits = [await limiter.acquire() for _ in range(10)]
        cuts = []
        for permit in permits:
            limiter.release(permit, Outcome.OVERLOAD)
            cuts.append(limiter.cut(permit, 0.75, "server overloaded"))
        return limiter, cuts

    limiter, cuts = asyncio.run(main())
    assert cuts == [True] + [False] * 9 and limiter.limit == 24
    assert limiter.snapshot().overloads == 10 and limiter.cuts == 1


def test_latency_near_the_timeout_cuts_the_limit() -> None:
    async def main() -> AdaptiveConcurrency:
        server = Server(lanes=1, service_s=0.01)
        limiter = AdaptiveConcurrency(64, initial=16, timeout_s=0.2, clock=server.clock)
        await drive(limiter, server, 16)  # the last of 16 queued requests waits ~0.16 s > half the timeout
        return limiter

    limiter = asyncio.run(main())
    assert limiter.limit <= 8
    assert "near the" in limiter.snapshot().reason


def test_fixed_mode_is_a_semaphore_of_the_maximum() -> None:
    async def main() -> tuple[AdaptiveConcurrency, Server]:
        server = Server(lanes=1000, service_s=0.01)
        limiter = AdaptiveConcurrency(5, initial=1, adaptive=False, clock=server.clock)
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

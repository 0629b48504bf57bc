"""The adaptive concurrency limiter against simulated servers on the event loop (no HTTP: the rules only)."""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable

import pytest

from generation.concurrency import FLOOR, AdaptiveConcurrency, Outcome


class Server:
    """``lanes`` requests computed at once (1: a server that queues), each taking ``service_s``.

    Time is virtual (the limiter reads ``clock``), so the test does not depend on how busy the machine is:
    a driver advances the clock to the next finishing request once every task is waiting.
    """

    def __init__(self, lanes: int, service_s: float, service: Callable[[Server], float] | None = None):
        self.lanes, self.service_s, self.service = [0.0] * lanes, service_s, service
        self.now = 0.0
        self.in_flight = self.peak = self.done = 0
        self._finishing: list[tuple[float, int, asyncio.Future[None]]] = []

    def clock(self) -> float:
        return self.now

    async def call(self) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        lane = min(range(len(self.lanes)), key=self.lanes.__getitem__)
        finish = max(self.now, self.lanes[lane]) + (self.service(self) if self.service else self.service_s)
        self.lanes[lane] = finish
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._finishing, (finish, id(done), done))
        try:
            await done
        finally:
            self.in_flight -= 1
            self.done += 1

    async def wait(self, seconds: float) -> None:
        """Virtual time passing outside the server (a request it hangs, until the client gives up)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._finishing, (self.now + seconds, id(done), done))
        await done

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


async def stream(limiter: AdaptiveConcurrency, server: Server, until: float, timeout_s: float = 3.0,
                 hang_every: int = 0) -> list[tuple[float, int]]:
    """``max_limit`` callers sending back to back until virtual time ``until``; every ``hang_every``-th request
    hangs until the client's timeout. Returns (time, limit) after every request."""
    history: list[tuple[float, int]] = []
    sent = 0

    async def caller() -> None:
        nonlocal sent
        while server.now < until:
            async with limiter.slot() as permit:
                sent += 1
                if hang_every and sent % hang_every == 0:
                    await server.wait(timeout_s)
                    permit.record(Outcome.TIMEOUT)
                else:
                    started = server.now
                    await server.call()
                    permit.record(Outcome.TIMEOUT if server.now - started > timeout_s else Outcome.OK)
            history.append((server.now, limiter.limit))

    work = asyncio.gather(*(caller() for _ in range(limiter.max_limit)))
    await server.run_clock(work)
    await work
    return history


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
    async def main() -> tuple[AdaptiveConcurrency, int]:
        limiter = AdaptiveConcurrency(8, initial=8)
        for i in range(2):  # one timeout is counted; the second in the window cuts
            with pytest.raises(TimeoutError):
                async with limiter.slot():
                    raise TimeoutError
            if i == 0:
                after_one = limiter.limit
        return limiter, after_one

    limiter, after_one = asyncio.run(main())
    assert after_one == 8 and limiter.timeouts == 2
    assert limiter.limit == 4 and limiter.in_flight == 0


def test_two_percent_of_requests_hanging_does_not_pull_the_limit_down() -> None:
    """bench/chaos's server hangs 2% of requests on purpose: a few timeouts a window are not a queue (before:
    every timeout in a new epoch halved, and the limit sat far below the maximum)."""

    async def main() -> tuple[AdaptiveConcurrency, list[tuple[float, int]]]:
        server = Server(lanes=1000, service_s=0.05)
        limiter = AdaptiveConcurrency(64, initial=4, timeout_s=3.0, clock=server.clock)
        return limiter, await stream(limiter, server, until=60.0, hang_every=50)

    limiter, history = asyncio.run(main())
    assert limiter.timeouts >= 100
    late = [limit for t, limit in history if 10.0 <= t < 60.0]  # after 60 s only hung requests come back
    assert min(late) >= 32 and sum(limit == 64 for limit in late) >= 0.9 * len(late), limiter.snapshot()


def test_a_window_with_two_percent_timed_out_requests_is_not_cut() -> None:
    async def main() -> AdaptiveConcurrency:
        limiter = AdaptiveConcurrency(128, initial=100)
        permits = [await limiter.acquire() for _ in range(100)]
        for i, permit in enumerate(permits):
            limiter.release(permit, Outcome.TIMEOUT if i % 50 == 0 else Outcome.OK)
        return limiter

    limiter = asyncio.run(main())
    assert limiter.timeouts == 2 and limiter.limit >= 100  # before: the first timeout halved it to 50


def test_the_limit_recovers_within_seconds_after_a_slow_minute() -> None:
    """A server 1.5 s slower for everyone for a minute (bench/chaos's fault, 3 s timeout): halving the limit does
    not lower latency, so it is not a queue and the limit comes back up during the minute; it is at the maximum
    within 2 s (a few windows) of the last slow reply (before: 1 during the minute, ~10 windows to recover)."""

    def service(server: Server) -> float:
        return 0.05 + (1.5 if 10.0 <= server.now < 70.0 else 0.0)

    async def main() -> list[tuple[float, int]]:
        server = Server(lanes=1000, service_s=0.05, service=service)
        limiter = AdaptiveConcurrency(64, initial=4, timeout_s=3.0, clock=server.clock)
        return await stream(limiter, server, until=80.0)

    history = asyncio.run(main())
    slow = [limit for t, limit in history if 10.0 <= t < 71.6]
    assert min(slow) >= FLOOR
    assert sum(limit >= 32 for t, limit in history if 20.0 <= t < 70.0) >= 0.9 * len(
        [t for t, _ in history if 20.0 <= t < 70.0])
    assert min(limit for t, limit in history if t >= 73.6) == 64


def test_growth_continues_while_latency_holds_within_the_tolerance() -> None:
    """A batching server whose latency rises to 2.5x with load and then holds (issue 13: a loaded client):
    past slow start the limit keeps growing by a quarter a window and reaches 256 within ~15 windows."""

    def service(server: Server) -> float:
        return 0.5 * (1 + 1.5 * min(1.0, server.in_flight / 24))

    async def main() -> list[tuple[float, int]]:
        server = Server(lanes=10_000, service_s=0.5, service=service)
        limiter = AdaptiveConcurrency(256, initial=4, timeout_s=120.0, clock=server.clock)
        return await stream(limiter, server, until=40.0)

    history = asyncio.run(main())
    reached = min((t for t, limit in history if limit == 256), default=None)
    assert reached is not None and reached <= 20.0, history[-1]  # a window here takes ~1.25 s


def test_a_server_that_queues_near_the_timeout_sees_no_timeouts() -> None:
    """The cut near the timeout still works where latency is a queue (transformers serve, one request at a time):
    halving the limit halves latency, so nothing is re-based and no request times out."""

    async def main() -> tuple[AdaptiveConcurrency, Server]:
        server = Server(lanes=1, service_s=1.0)
        limiter = AdaptiveConcurrency(64, initial=4, timeout_s=10.0, clock=server.clock)
        await drive(limiter, server, 300, timeout_s=10.0)
        return limiter, server

    limiter, server = asyncio.run(main())
    assert limiter.timeouts == 0 and server.peak <= 8, limiter.snapshot()


def test_a_limiter_started_in_a_slow_minute_still_grows() -> None:
    """A worker (re)started while the server is 1.5 s slower for everyone (bench/chaos, 3 s timeout) never saw it
    fast: at its floor, latency near the timeout is the server's pace, not a queue it made, so the limit grows
    (before: it stayed at 4 for the whole minute)."""

    def service(server: Server) -> float:
        return 1.55  # whatever the load: a slow server, not a queue

    async def main() -> list[tuple[float, int]]:
        server = Server(lanes=1000, service_s=1.55, service=service)
        limiter = AdaptiveConcurrency(64, initial=4, timeout_s=3.0, clock=server.clock)
        return await stream(limiter, server, until=40.0)

    history = asyncio.run(main())
    assert max(limit for t, limit in history if t < 30.0) >= 32, history[-5:]

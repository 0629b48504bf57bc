"""The limiter when the server's own pace changes (bench/chaos: every request 1.5 s slower for a minute, 3 s
timeout): told from a queue at once, the rate kept; windows driven by hand on a virtual clock."""

from __future__ import annotations

import asyncio

from generation.concurrency import AdaptiveConcurrency, Outcome


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def window(limiter: AdaptiveConcurrency, clock: Clock, latencies: list[float], timeouts: int = 0,
           in_flight: int | None = None) -> None:
    """One round of requests sent together: ``latencies`` answered (each after its latency) and ``timeouts``
    timed out (after 3 s); ``in_flight`` (default all of them) at a time, as a paced client would send them."""
    outcomes = [(lat, Outcome.OK) for lat in latencies] + [(3.0, Outcome.TIMEOUT)] * timeouts
    step = in_flight or len(outcomes)

    async def run() -> None:
        for i in range(0, len(outcomes), step):
            batch = outcomes[i:i + step]
            # More than the limit lets through would wait for ever: fail instead (the test sizes its rounds).
            permits = [await asyncio.wait_for(limiter.acquire(), 1.0) for _ in batch]
            start = clock.now
            for permit, (latency, outcome) in sorted(zip(permits, batch), key=lambda p: p[1][0]):
                clock.now = start + latency
                limiter.release(permit, outcome)

    asyncio.run(run())


def test_a_jump_in_latency_at_the_same_load_keeps_the_rate_instead_of_cutting() -> None:
    """A worker paced at 8 in flight (its limit of 16 not reached) sees every request become 1.55 s at once:
    not a queue (latency did not follow the load), so the limit grows by the jump (31x, to the maximum) in the
    first slow window: the rate it had still gets through. Before: cut to 8 ("near the timeout"), re-based a
    window later and doubled back, a window of 1.5 s per doubling (~8 s at a fraction of the rate)."""
    clock = Clock()
    limiter = AdaptiveConcurrency(64, initial=16, timeout_s=3.0, clock=clock)
    for _ in range(5):
        window(limiter, clock, [0.05] * 16, in_flight=8)
    assert limiter.limit == 16, limiter.snapshot()  # never reached: kept
    window(limiter, clock, [1.55] * 16, in_flight=8)
    assert limiter.limit == 64, limiter.snapshot()
    assert "jumped" in limiter.snapshot().reason
    for _ in range(3):  # the slower pace holds: no cut, it is the server's
        window(limiter, clock, [1.55 + 0.002 * i for i in range(64)])
    assert limiter.limit == 64, limiter.snapshot()


def test_a_window_that_straddles_the_change_waits_for_the_next_one() -> None:
    """The first slow window may still hold replies from before the change: its p90 jumped, its bulk not yet. It
    neither cuts nor re-bases on its fast replies (that left the limit at 2-5 for the whole slow minute in a
    simulation); the next window, all slow, re-bases against the last window before the change."""
    clock = Clock()
    limiter = AdaptiveConcurrency(64, initial=8, timeout_s=3.0, clock=clock)
    for _ in range(5):
        window(limiter, clock, [0.04] * 8, in_flight=4)
    assert limiter.limit == 8, limiter.snapshot()
    window(limiter, clock, [0.03, 0.04, 0.05, 0.05, 1.56, 1.57, 1.6, 1.7], in_flight=4)
    assert limiter.limit == 8 and "kept" in limiter.snapshot().reason, limiter.snapshot()
    window(limiter, clock, [1.55] * 8, in_flight=4)
    assert limiter.limit == 64, limiter.snapshot()


def test_a_queue_near_the_timeout_is_still_cut() -> None:
    """Latency that grew with the load (slow start doubled the limit, latency doubled) is a queue: cut as before."""
    clock = Clock()
    limiter = AdaptiveConcurrency(64, initial=16, timeout_s=3.0, clock=clock)
    window(limiter, clock, [0.8 + 0.01 * i for i in range(16)])
    assert limiter.limit == 32, limiter.snapshot()
    window(limiter, clock, [1.6 + 0.02 * i for i in range(32)])
    assert limiter.limit == 16 and "near the" in limiter.snapshot().reason, limiter.snapshot()


def test_a_hung_request_or_two_do_not_stop_the_growth() -> None:
    """A window with a timed-out request (the server hangs 2% of requests) but latency holding still grows: a
    queue times out many requests at once, and those cut (before: the window was kept, and at 32 in flight half
    the windows of bench/chaos's slow minute held one, so a worker restarted there took ~10 s to reach 64)."""
    clock = Clock()
    limiter = AdaptiveConcurrency(64, initial=16, timeout_s=3.0, clock=clock)
    window(limiter, clock, [0.05] * 15, timeouts=1)
    assert limiter.limit == 32, limiter.snapshot()
    window(limiter, clock, [0.05] * 31, timeouts=1)
    assert limiter.limit == 64, limiter.snapshot()


def test_a_window_is_as_many_samples_as_may_be_in_flight() -> None:
    """At a limit of 4.x, 4 requests fit in flight: a window of 5 needed a second round trip (at 1.5 s a request,
    3 s per window of slow start)."""
    clock = Clock()
    limiter = AdaptiveConcurrency(64, initial=4, timeout_s=3.0, clock=clock)
    limiter._limit = 4.6  # as after a gradient step  # noqa: SLF001
    window(limiter, clock, [0.05] * 4)
    assert limiter.limit == 9, limiter.snapshot()  # one round trip closed the window: slow start doubled it


def test_a_limiter_started_high_in_a_slow_period_keeps_its_limit() -> None:
    """A worker joining a running batch starts at its siblings' limit (workers/chunks.py): its first window, all at
    one slow pace near the timeout, is the server's pace, not a queue it made (before: halved down to 4)."""
    clock = Clock()
    limiter = AdaptiveConcurrency(64, initial=64, timeout_s=3.0, clock=clock)
    for _ in range(3):
        window(limiter, clock, [1.55 + 0.002 * i for i in range(64)])
    assert limiter.limit == 64, limiter.snapshot()

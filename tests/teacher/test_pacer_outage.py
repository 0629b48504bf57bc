"""Redis restarting under the shared pacer (bench/chaos restarts it empty at 25% of the drafts): the requests that
book their slot meanwhile wait for it, and no draft fails. Before, each of them failed its draft with the Redis
error, worded by the breaker's classification as "cannot connect to the server ... is OPENAI_BASE_URL right?"
(174 records of one chaos run). A Redis that stays away fails the request with a reason naming the limiter."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from generation import throttle as throttle_module
from generation.backends.teacher import _MODES, TeacherBackend
from generation.ratelimit import Rates
from generation.ratelimit_redis import RedisLimiter
from generation.retry import Backoff
from reasongen.testing.openai_server import start_stub_server
from tests.services import unavailable
from tests.teacher.test_selfhosted_stub import prompts

KEY = "sk-pacer-outage-0123456789abcdef"


class Server:
    """A private redis-server on a free port, so the test can stop and start it (never the shared one)."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server (the binary)", FileNotFoundError("redis-server"))
        self.binary = str(binary)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no"], stdout=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    s.start()
    yield s
    s.stop()


def teacher(redis_url: str, **faults: object) -> tuple[TeacherBackend, object]:
    url, stub = start_stub_server(api_key=KEY, **faults)
    _MODES.clear()
    limiter = RedisLimiter(Rates.per_minute(60_000, None), redis_url, f"test:pacer-outage:{uuid.uuid4().hex}")
    backend = TeacherBackend("stub-model", base_url=url, api_key=KEY, concurrency=4, adaptive=False, timeout_s=10.0,
                             backoff=Backoff(base_s=0.01, cap_s=0.05), limiter=limiter)
    return backend, stub


def test_drafts_wait_for_a_restarting_redis_instead_of_failing(server: Server) -> None:
    backend, stub = teacher(server.url, latency_s=0.02)
    try:
        futures = backend.submit_each(prompts(120))
        while sum(f.done() for f in futures) < 12:  # the pacer's connections are up and in use
            time.sleep(0.005)
        server.stop()  # requests booking their slot from now on find Redis gone ...
        assert not all(f.done() for f in futures), "the drafts ended before Redis went away: nothing was tested"
        time.sleep(0.5)
        server.start()  # ... and back, empty, as in bench/chaos
        drafts = [f.result(timeout=60) for f in futures]
    finally:
        backend.close()
        stub.stop()  # type: ignore[attr-defined]
    assert [d.error for d in drafts if d.error] == []


def test_a_redis_that_stays_away_fails_the_request_naming_the_limiter(server: Server, monkeypatch) -> None:
    monkeypatch.setattr(throttle_module, "PACER_PATIENCE_S", 0.5)
    backend, stub = teacher(server.url)
    try:
        assert backend.generate(prompts(1))[0].error is None
        server.stop()
        started = time.monotonic()
        draft = backend.generate(prompts(1))[0]
        waited = time.monotonic() - started
    finally:
        backend.close()
        stub.stop()  # type: ignore[attr-defined]
    assert draft.error is not None and "rate limiter" in draft.error and str(server.port) in draft.error
    assert "OPENAI_BASE_URL" not in draft.error  # not the teacher's endpoint: nothing was sent to it
    assert 0.5 <= waited < 10


def test_a_429_or_a_token_count_the_pacer_cannot_take_does_not_replace_the_reply(server: Server) -> None:
    # The reply (or the 429) is in while Redis restarts: sharing it with the pacer fails, and that must not turn into
    # the request's error (the retry then waits for the pacer in acquire).
    import asyncio

    import httpx
    import openai

    from generation.concurrency import Outcome
    from generation.throttle import Throttle

    pacer = RedisLimiter(Rates.per_minute(60_000, 10_000_000), server.url, f"test:pacer-outage:{uuid.uuid4().hex}")
    throttle = Throttle(8, adaptive=False, pacer=pacer)
    refused = openai.RateLimitError("Rate limit reached", body=None, response=httpx.Response(
        429, request=httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")))

    async def main() -> Outcome:
        first, second = await throttle.acquire(100), await throttle.acquire(100)
        server.stop()
        await throttle.succeeded(first, 100, 150)  # its tokens are not settled: the reply still counts
        return await throttle.failed(second, refused)

    assert asyncio.run(main()) is Outcome.OVERLOAD

"""The teacher's direct POST: the SDK's headers and the SDK's exceptions, as the SDK's own request path gives them.

Each failure is provoked against a real server and read through both paths (``DirectPost`` and the SDK's raw
``client.post``); what retries, the breaker and error messages read must be the same.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from aiohttp import web

from generation.backends.chat_format import http_client_class, pool_limits, raw_response_class
from generation.backends.direct import DirectPost
from generation.breaker import classify
from generation.retry import retry_after, retry_cause

KEY = "sk-test-direct-1234567"
BODY = {"model": "m", "messages": [{"role": "user", "content": "Is 7 prime?"}], "max_tokens": 8}


def _client(url: str, key: str = KEY, **extra: Any) -> openai.AsyncOpenAI:
    http = http_client_class("aiohttp")(limits=pool_limits(4), timeout=2.0)
    return openai.AsyncOpenAI(base_url=url, api_key=key, max_retries=0, timeout=1.0, http_client=http, **extra)


async def _both(url: str, key: str = KEY, **extra: Any) -> list[BaseException | bytes]:
    """The outcome of the same POST made by DirectPost and by the SDK."""
    client = _client(url, key, **extra)
    direct = DirectPost(client, 4, 1.0)
    outcomes: list[BaseException | bytes] = []
    try:
        for post in (lambda: direct.post(BODY), lambda: _sdk_post(client)):
            try:
                outcomes.append(await post())
            except Exception as exc:  # noqa: BLE001 - compared below
                outcomes.append(exc)
    finally:
        await direct.aclose()
        await client.close()
    return outcomes


async def _sdk_post(client: openai.AsyncOpenAI) -> bytes:
    response = await client.post("/chat/completions", cast_to=raw_response_class(), body=BODY,
                                 options={"timeout": 1.0})
    return await response.aread()  # type: ignore[no-any-return]


class _Server:
    """A real HTTP server answering with whatever the test sets; it records every request's headers."""

    def __init__(self) -> None:
        self.answer: Any = lambda: web.json_response({"choices": [{"message": {"content": "{}"},
                                                                    "finish_reason": "stop"}]})
        self.headers: list[dict[str, str]] = []
        self.hang = False
        self.drop = False

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.headers.append({k.lower(): v for k, v in request.headers.items()})  # httpx sends names lowercase
        await request.read()
        if self.hang:
            await asyncio.sleep(5)
        if self.drop and request.transport is not None:  # gone without an answer, as the stub's "drop" fault
            request.transport.abort()
            raise asyncio.CancelledError
        return self.answer()  # a response object can be sent once: a new one each time


@pytest.fixture
def server() -> Iterator[tuple[str, _Server]]:
    state, ready, loop = _Server(), threading.Event(), asyncio.new_event_loop()
    holder: dict[str, Any] = {}

    async def start() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", state.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        holder["runner"], holder["port"] = runner, site._server.sockets[0].getsockname()[1]  # noqa: SLF001
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    ready.wait(10)
    yield f"http://127.0.0.1:{holder['port']}/v1", state
    asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)


def test_the_sdk_headers_reach_the_server_key_organisation_and_custom_ones(server):
    url, state = server
    direct, sdk = asyncio.run(_both(url, organization="org-7", default_headers={"X-Team": "qe"}))
    assert direct == sdk and b"choices" in direct
    mine, theirs = state.headers
    for name in ("authorization", "openai-organization", "x-team", "user-agent", "content-type"):
        assert mine.get(name) == theirs.get(name), name
    assert mine["authorization"] == f"Bearer {KEY}" and mine["openai-organization"] == "org-7"
    assert "openai-project" not in mine  # unset in the SDK (Omit): not sent as a string


@pytest.mark.parametrize("status,message,headers", [
    (429, "Rate limit reached", {"Retry-After": "3", "retry-after-ms": "2500"}),
    (401, "Incorrect API key provided: sk-te****4567", {}),
    (400, "response_format json_schema is not supported", {}),
    (500, "The server had an error", {}),
])
def test_status_errors_are_the_sdks_own(server, status, message, headers):
    url, state = server
    state.answer = lambda: web.json_response({"error": {"message": message, "type": "x", "code": None}},
                                             status=status, headers=headers)
    direct, sdk = asyncio.run(_both(url))
    assert type(direct) is type(sdk) and isinstance(direct, openai.APIStatusError)
    assert str(direct) == str(sdk) and direct.status_code == status
    assert retry_cause(direct) == retry_cause(sdk) and retry_after(direct) == retry_after(sdk)
    assert classify(direct, KEY) == classify(sdk, KEY)


def test_a_refused_connection_reads_as_one_for_the_breaker():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    direct, sdk = asyncio.run(_both(f"http://127.0.0.1:{port}/v1"))
    assert isinstance(direct, openai.APIConnectionError) and isinstance(sdk, openai.APIConnectionError)
    failure = classify(direct, KEY)
    assert failure is not None and "cannot connect to the server" in failure.message
    assert failure == classify(sdk, KEY)


def test_a_server_that_never_answers_is_a_timeout(server):
    url, state = server
    state.hang = True
    direct, sdk = asyncio.run(_both(url))
    assert isinstance(direct, openai.APITimeoutError) and isinstance(sdk, openai.APITimeoutError)
    assert retry_cause(direct) == retry_cause(sdk) == "timeout"


def test_a_connection_dropped_mid_request_is_load_retried_not_counted_by_the_breaker(server):
    """A server dropping a burst of held requests (a restart, a proxy) must not pause the batch: each is retried."""
    url, state = server
    state.drop = True
    direct, _ = asyncio.run(_both(url))
    assert isinstance(direct, openai.APIConnectionError)
    assert retry_cause(direct) == "connection" and classify(direct, KEY) is None

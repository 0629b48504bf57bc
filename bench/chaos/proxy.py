"""A counting proxy in front of the test server: what the user pays for, measured at the server side.

Every chat completion the workers send passes through here. The proxy counts requests, and for each prompt
(model + messages: what the cache key covers) the *clean* answers (200, finish_reason "stop", JSON content):
a second clean answer for the same prompt is a paid duplicate. It is explained when an injected disruptive
event (a worker SIGKILLed, PostgreSQL killed, Redis emptied) happened between the two answers: work in
flight at that moment may legitimately be asked again. Unexplained paid duplicates must be zero.

For one window it can also delay every request (a slow server) without touching the server itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections import defaultdict
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web


class CountingProxy:
    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.requests = 0
        self.answers: dict[str, list[float]] = defaultdict(list)  # prompt key -> times of clean answers
        self.events: list[tuple[float, str]] = []
        self.slow_until, self.slow_delay = 0.0, 0.0
        self._session: ClientSession | None = None

    def event(self, name: str) -> None:
        self.events.append((time.monotonic(), name))

    def slow(self, seconds: float, delay: float) -> None:
        self.slow_until, self.slow_delay = time.monotonic() + seconds, delay
        self.event(f"slow server {seconds:.0f}s (+{delay:.1f}s a request)")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests += 1
        if time.monotonic() < self.slow_until:
            await asyncio.sleep(self.slow_delay)
        if self._session is None:
            self._session = ClientSession(connector=TCPConnector(limit=0), timeout=ClientTimeout(total=None))
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
        url = self.upstream + request.path_qs.removeprefix("/v1")
        try:
            async with self._session.request(request.method, url, data=body, headers=headers) as resp:
                payload = await resp.read()
                status = resp.status
                out_headers = {k: v for k, v in resp.headers.items() if k.lower() in ("content-type", "retry-after")}
        except ClientError:  # the server dropped the connection (an injected fault): so does the proxy
            return web.Response(status=502, text="upstream closed the connection")
        if status == 200 and request.path.endswith("/chat/completions"):
            self._count(body, payload)
        return web.Response(body=payload, status=status, headers=out_headers)

    def _count(self, body: bytes, payload: bytes) -> None:
        try:
            sent, answer = json.loads(body), json.loads(payload)
            choice = answer["choices"][0]
            if choice.get("finish_reason") != "stop" or choice["message"].get("refusal"):
                return
            json.loads(choice["message"]["content"])
        except (ValueError, KeyError, IndexError, TypeError):
            return  # an injected fault (malformed, truncated): its retry is not a duplicate
        key = hashlib.sha256(json.dumps([sent.get("model"), sent.get("messages")], sort_keys=True).encode())
        self.answers[key.hexdigest()].append(time.monotonic())

    def report(self) -> dict[str, Any]:
        paid = explained = 0
        for times in self.answers.values():
            for before, after in zip(times, times[1:]):
                paid += 1
                explained += any(before <= t <= after for t, _ in self.events)
        return dict(requests=self.requests, prompts_answered=len(self.answers), paid_duplicates=paid,
                    explained_by_injected_faults=explained, unexplained_paid_duplicates=paid - explained)


def start(upstream: str, port: int) -> CountingProxy:
    """Serve on 127.0.0.1:port from a daemon thread; returns the proxy (its counters are read directly)."""
    proxy, ready = CountingProxy(upstream), threading.Event()

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        app = web.Application(client_max_size=2**24)
        app.router.add_route("*", "/{tail:.*}", proxy.handle)
        runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port, backlog=2048).start())
        ready.set()
        loop.run_forever()

    threading.Thread(target=run, name="counting-proxy", daemon=True).start()
    if not ready.wait(20):
        raise RuntimeError("counting proxy did not start")
    return proxy

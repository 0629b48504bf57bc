"""A counting proxy in front of the test server: what the user pays for, measured at the server side.

Every chat completion the workers send passes through here. The proxy counts requests, and for each prompt
(model + messages: what the cache key covers) the *clean* answers (200, finish_reason "stop", JSON content):
a second clean answer for the same prompt is a paid duplicate. It is explained when an injected disruptive
event (a worker SIGKILLed, PostgreSQL killed, Redis emptied) happened between the two answers: work in
flight at that moment may legitimately be asked again; or when the first answer reached no client because
the client had given up waiting (its timeout) on a request sent during the injected slow window: that is a
retry of an injected fault. Every other paid duplicate is unexplained and must be zero; the report lists
them (times, whether each answer was delivered, the events around) so they can be traced.

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
        # prompt key -> (sent at, answered at, delivered to a client still waiting) of each clean answer
        self.answers: dict[str, list[tuple[float, float, bool]]] = defaultdict(list)
        self.slow_windows: list[tuple[float, float]] = []
        self.prompts: dict[str, str] = {}  # prompt key -> the end of its last message (which record it is)
        self.started = time.monotonic()
        self.events: list[tuple[float, str]] = []
        self.slow_until, self.slow_delay = 0.0, 0.0
        self._session: ClientSession | None = None

    def event(self, name: str) -> None:
        self.events.append((time.monotonic(), name))

    def slow(self, seconds: float, delay: float) -> None:
        self.slow_until, self.slow_delay = time.monotonic() + seconds, delay
        self.slow_windows.append((time.monotonic(), self.slow_until))  # not a disruptive event: nothing dies

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        sent = time.monotonic()
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
            gone = request.transport is None or request.transport.is_closing()  # the client timed out
            self._count(body, payload, sent, not gone)
        return web.Response(body=payload, status=status, headers=out_headers)

    def _count(self, body: bytes, payload: bytes, sent_at: float, delivered: bool) -> None:
        try:
            sent, answer = json.loads(body), json.loads(payload)
            choice = answer["choices"][0]
            if choice.get("finish_reason") != "stop" or choice["message"].get("refusal"):
                return
            json.loads(choice["message"]["content"])
        except (ValueError, KeyError, IndexError, TypeError):
            return  # an injected fault (malformed, truncated): its retry is not a duplicate
        key = hashlib.sha256(json.dumps([sent.get("model"), sent.get("messages")], sort_keys=True).encode())
        self.answers[key.hexdigest()].append((sent_at, time.monotonic(), delivered))
        self.prompts.setdefault(key.hexdigest(), str(sent.get("messages", [{}])[-1].get("content", ""))[-80:])

    def _slow(self, t: float) -> bool:
        return any(start <= t <= end for start, end in self.slow_windows)

    def report(self) -> dict[str, Any]:
        paid = by_event = by_timeout = 0
        unexplained: list[str] = []
        for key, answers in self.answers.items():
            for before, after in zip(answers, answers[1:]):
                paid += 1
                if any(before[1] <= t <= after[1] for t, _ in self.events):
                    by_event += 1
                elif not before[2] and self._slow(before[0]):
                    by_timeout += 1
                else:
                    unexplained.append(f"{self._describe(before, after)}; prompt ...{self.prompts[key]!r}")
        return dict(requests=self.requests, prompts_answered=len(self.answers), paid_duplicates=paid,
                    explained_by_injected_faults=by_event + by_timeout, explained_by_events=by_event,
                    explained_by_slow_timeouts=by_timeout, unexplained_paid_duplicates=len(unexplained),
                    unexplained=unexplained)

    def _describe(self, before: tuple[float, float, bool], after: tuple[float, float, bool]) -> str:
        def one(a: tuple[float, float, bool]) -> str:
            return (f"sent {a[0] - self.started:.1f}s answered {a[1] - self.started:.1f}s "
                    f"{'delivered' if a[2] else 'client gone'}")
        near = [f"{name} at {t - self.started:.1f}s" for t, name in self.events if abs(t - before[1]) < 60]
        return f"first {one(before)}; second {one(after)}; events within 60s: {', '.join(near) or 'none'}"


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

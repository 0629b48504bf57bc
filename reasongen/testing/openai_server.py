"""A loopback OpenAI-compatible server with injectable faults, for tests, benches and demos (on aiohttp.web).

Answers ``POST /v1/chat/completions`` with a well-formed JSON draft built from the request, ``GET /v1/models``,
the batch API (``/v1/files``, ``/v1/batches``: see :mod:`reasongen.testing.batch_api`), and ``GET /stats``
(counters, requests in flight now and at most). Faults are drawn from a seeded RNG in arrival order, taken from a
``script`` (one fault per request, in order), or forced by a ``[[stub:FAULT]]`` / ``[[stub:FAULT:once]]`` marker
in the prompt. The API key, when required, is compared and counted, never logged.

    base_url, handle = start_stub_server(latency_s=0.5, rps_limit=50)
    python -m reasongen.testing.openai_server --port 8199 --rps-limit 50
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import math
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import asdict, fields
from typing import Any, TypeVar

import orjson
from aiohttp import web

from reasongen.testing.completions import completion, tokens
from reasongen.testing.faults import FAULTS, Faults, StubState

__all__ = ["FAULTS", "Faults", "StubHandle", "StubServer", "start_stub_server", "spawn_stub_process"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, headers=headers, content_type="application/json")


def error(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": message, "type": code, "param": None, "code": code}}
    return json_response(body, status, headers)


class StubServer:
    def __init__(self, faults: Faults):
        self.state = StubState(faults)
        self.hang = asyncio.Event()  # set on shutdown so hanging handlers finish
        self.one_at_a_time = asyncio.Lock()  # Faults.serial: one request computed at a time

    def app(self) -> web.Application:
        from reasongen.testing.batch_api import BatchAPI

        app = web.Application(middlewares=[self._count_and_authorize], client_max_size=256 * 2**20)
        app.add_routes([
            web.get("/stats", self.stats), web.post("/stats/reset", self.reset),
            web.get("/v1/models", self.models), web.post("/v1/chat/completions", self.chat),
        ])
        self.batches = BatchAPI(self)
        app.add_routes(self.batches.routes())
        app.on_shutdown.append(self._release_hung)
        return app

    async def _release_hung(self, _app: web.Application) -> None:
        self.hang.set()

    @web.middleware
    async def _count_and_authorize(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/v1"):
            return await handler(request)
        st = self.state
        st.enter("requests_in_flight")
        try:
            if not self._authorized(request):
                return error(401, "Incorrect API key provided.", "invalid_api_key")
            return await handler(request)
        finally:
            st.leave("requests_in_flight")

    def _authorized(self, request: web.Request) -> bool:
        expected = self.state.faults.api_key
        if expected is None:
            return True
        given = request.headers.get("Authorization", "").encode()
        ok = hmac.compare_digest(given, f"Bearer {expected}".encode())
        self.state.stats["auth_ok" if ok else "auth_bad"] += 1
        return ok

    async def stats(self, _request: web.Request) -> web.Response:
        return json_response(self.state.snapshot())

    async def reset(self, _request: web.Request) -> web.Response:
        self.state.reset()
        return json_response({"ok": True})

    async def models(self, _request: web.Request) -> web.Response:
        model: dict[str, Any] = {"id": "stub-model", "object": "model", "owned_by": "stub"}
        if self.state.faults.context_length:  # as vLLM reports it
            model["max_model_len"] = self.state.faults.context_length
        return json_response({"object": "list", "data": [model]})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read() or b"{}")
        st = self.state
        st.stats["requests"] += 1
        rejected = self.reject_format(body) or self.reject_length(body)
        if rejected:
            return rejected
        wait = st.bucket.take() if st.bucket else 0.0
        fault = "ratelimit" if wait else st.pick_fault(body)
        st.stats[f"fault_{fault}"] += 1
        if fault == "ratelimit":
            st.stats["status_429"] += 1
            headers = {"Retry-After": str(max(1, math.ceil(wait))), "retry-after-ms": str(int(wait * 1000) + 1)}
            return error(429, "Rate limit reached for requests", "rate_limit_exceeded", headers)
        st.accepted()
        st.enter("in_flight")
        try:
            return await self._answer(request, body, fault, st.stats["requests"])
        finally:
            st.leave("in_flight")

    def reject_length(self, body: dict[str, Any]) -> web.Response | None:
        """vLLM's answer to a prompt plus max_tokens longer than the context."""
        limit = self.state.faults.context_length
        if not limit:
            return None
        prompt = sum(tokens(str(m.get("content") or "")) for m in body.get("messages", []))
        wanted = prompt + int(body.get("max_completion_tokens") or body.get("max_tokens") or 0)
        if wanted <= limit:
            return None
        self.state.stats["status_400"] += 1
        return error(400, f"This model's maximum context length is {limit} tokens. However, you requested {wanted} "
                          f"tokens ({prompt} in the messages, {wanted - prompt} in the completion).",
                     "invalid_request_error")

    def reject_format(self, body: dict[str, Any]) -> web.Response | None:
        kind = (body.get("response_format") or {}).get("type")
        f = self.state.faults
        if (kind == "json_schema" and f.reject_json_schema) or (kind == "json_object" and f.reject_json_object):
            self.state.stats["status_400"] += 1
            return error(400, f"response_format {kind} is not supported by this server", "invalid_request_error")
        return None

    async def _answer(self, request: web.Request, body: dict[str, Any], fault: str,
                      request_no: int) -> web.StreamResponse:
        if self.state.faults.latency_s:
            if self.state.faults.serial:
                async with self.one_at_a_time:
                    await asyncio.sleep(self.state.faults.latency_s)
            else:
                await asyncio.sleep(self.state.faults.latency_s)
        if fault == "hang":
            await self.hang.wait()
            fault = "drop"
        if fault == "drop":
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError  # nothing to write on a connection that is gone
        if fault == "error":
            self.state.stats["status_500"] += 1
            return error(500, self.state.faults.error_message, "server_error")
        self.state.stats["status_200"] += 1
        return json_response(completion(body, fault, request_no, self.state.faults.reply))


class StubHandle:
    """Controls a server running on its own event loop thread."""

    def __init__(self, server: StubServer, loop: asyncio.AbstractEventLoop, thread: threading.Thread,
                 runner: web.AppRunner):
        self.server, self._loop, self._thread, self._runner = server, loop, thread, runner

    def stats(self) -> dict[str, Any]:
        return self._call(self.server.state.snapshot)

    def reset(self) -> None:
        self._call(self.server.state.reset)

    def configure(self, **faults: Any) -> None:
        def apply() -> None:
            self.server.state.faults.update(**faults)
            self.server.state.reset()
        self._call(apply)

    def _call(self, fn: Callable[[], T]) -> T:
        async def run() -> T:
            return fn()
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._loop.call_soon_threadsafe(self.server.hang.set)
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(15)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> "StubHandle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def serve(faults: Faults, host: str = "127.0.0.1", port: int = 0) -> tuple[StubServer, web.AppRunner, int]:
    """Start listening; returns the server, its runner (``await runner.cleanup()`` stops it) and the port."""
    server = StubServer(faults)
    # handler_cancellation: a client that gives up (a hang's timeout) ends its handler, so in-flight counts hold.
    runner = web.AppRunner(server.app(), access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=2048)
    await site.start()
    return server, runner, runner.addresses[0][1]


def start_stub_server(host: str = "127.0.0.1", port: int = 0, **faults: Any) -> tuple[str, StubHandle]:
    """Start on a daemon thread; returns (base_url ending in /v1, handle)."""
    loop = asyncio.new_event_loop()
    started: dict[str, Any] = {}
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            started["server"], started["runner"], started["port"] = loop.run_until_complete(
                serve(Faults(**faults), host, port))
        except BaseException as exc:  # reported to the caller below
            started["error"] = exc
            return
        finally:
            ready.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=run, name="openai-stub", daemon=True)
    thread.start()
    ready.wait(10)
    if "error" in started:
        raise started["error"]
    return f"http://{host}:{started['port']}/v1", StubHandle(started["server"], loop, thread, started["runner"])


def spawn_stub_process(host: str = "127.0.0.1", port: int = 0, **faults: Any) -> tuple[str, subprocess.Popen[str]]:
    """Run the server in its own process (so it does not share the caller's GIL); returns (base_url, process)."""
    args = [sys.executable, "-m", "reasongen.testing.openai_server", "--host", host, "--port", str(port)]
    env = None
    for name, value in faults.items():
        if name == "api_key":
            env, value = {**os.environ, "REASONGEN_STUB_KEY": value}, None
            args += ["--api-key-env", "REASONGEN_STUB_KEY"]
        elif name == "script":
            args += ["--script", ",".join(value)]
        elif value is True:
            args.append("--" + name.replace("_", "-"))
        elif value not in (None, False):
            args += ["--" + name.replace("_", "-"), str(value)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("openai stub on "):
        proc.kill()
        raise RuntimeError(f"the stub did not start: {line!r}")
    return line.split()[3], proc


_TYPES: dict[str, type] = {"int": int, "str": str, "float": float, "float | None": float, "int | None": int,
                           "str | None": str}


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Loopback OpenAI-compatible server with injectable faults.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8199)
    for f in fields(Faults):
        if f.name in ("script", "api_key"):
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            p.add_argument(flag, action="store_true")
        else:
            p.add_argument(flag, type=_TYPES.get(str(f.type), float), default=f.default)
    p.add_argument("--api-key-env", help="environment variable holding the key to require (never printed)")
    p.add_argument("--script", default="", help="comma-separated faults for the first requests")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = vars(_arguments(argv))
    host, port, key_env = args.pop("host"), args.pop("port"), args.pop("api_key_env")
    script = [s for s in args.pop("script").split(",") if s]
    faults = Faults(**args, script=script, api_key=os.environ.get(key_env) if key_env else None)

    async def run() -> None:
        _, runner, bound = await serve(faults, host, port)
        shown = {k: v for k, v in asdict(faults).items() if k != "api_key"}
        print(f"openai stub on http://{host}:{bound}/v1 {shown}", flush=True)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):  # stop cleanly (releasing hung requests) on either
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

"""A loopback OpenAI-compatible server with injectable faults, for tests, benches and demos.

It speaks plain HTTP/1.1 with keep-alive on asyncio (hundreds of concurrent connections), answers
``POST /v1/chat/completions`` with a well-formed JSON draft built from the request, ``GET /v1/models``,
and ``GET /stats`` (request counters). Faults are drawn from a seeded RNG in arrival order, taken from a
``script`` (one fault per request, in order), or forced by a ``[[stub:FAULT]]`` / ``[[stub:FAULT:once]]``
marker in the prompt. The API key, when required, is compared and counted, never logged.

    base_url, handle = start_stub_server(latency_s=0.5, rps_limit=50)
    python -m generation.backends.openai_stub --port 8199 --rps-limit 50
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import math
import subprocess
import sys
import threading
from dataclasses import asdict, fields
from typing import Any

from generation.backends.stub_faults import FAULTS, Faults, StubState, completion

__all__ = ["FAULTS", "Faults", "StubHandle", "start_stub_server", "spawn_stub_process"]

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests",
            500: "Internal Server Error"}


class StubServer:
    def __init__(self, faults: Faults):
        self.state = StubState(faults)
        self._hang = asyncio.Event()  # set on shutdown so hanging handlers finish

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        method, path, headers = _parse_head(head)
        body = await reader.readexactly(int(headers.get("content-length", 0)))
        status, payload, extra = await self.route(method, path, headers, body)
        if status == 0:  # dropped connection
            return False
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        keep = headers.get("connection", "").lower() != "close"
        writer.write(_response_head(status, len(data), keep, extra) + data)
        await writer.drain()
        return keep

    async def route(self, method: str, path: str, headers: dict[str, str], body: bytes):  # type: ignore[no-untyped-def]
        path = path.split("?", 1)[0].rstrip("/")
        if method == "GET" and path == "/stats":
            return 200, self.state.snapshot(), {}
        if method == "POST" and path == "/stats/reset":
            self.state.reset()
            return 200, {"ok": True}, {}
        if not self._authorized(headers):
            return 401, _error("Incorrect API key provided.", "invalid_api_key"), {}
        if method == "GET" and path.endswith("/models"):
            return 200, {"object": "list", "data": [{"id": "stub-model", "object": "model", "owned_by": "stub"}]}, {}
        if method == "POST" and path.endswith("/chat/completions"):
            return await self.chat(json.loads(body or b"{}"))
        return 404, _error(f"No route {method} {path}", "not_found"), {}

    def _authorized(self, headers: dict[str, str]) -> bool:
        expected = self.state.faults.api_key
        if expected is None:
            return True
        ok = hmac.compare_digest(headers.get("authorization", "").encode(), f"Bearer {expected}".encode())
        self.state.stats["auth_ok" if ok else "auth_bad"] += 1
        return ok

    async def chat(self, body: dict[str, Any]):  # type: ignore[no-untyped-def]
        st = self.state
        st.stats["requests"] += 1
        rejected = self._reject_format(body)
        if rejected:
            return rejected
        wait = st.bucket.take() if st.bucket else 0.0
        fault = "ratelimit" if wait else st.pick_fault(body)
        st.stats[f"fault_{fault}"] += 1
        if fault == "ratelimit":
            st.stats["status_429"] += 1
            headers = {"Retry-After": str(max(1, math.ceil(wait))), "retry-after-ms": str(int(wait * 1000) + 1)}
            return 429, _error("Rate limit reached for requests", "rate_limit_exceeded"), headers
        st.accepted()
        st.in_flight += 1
        st.stats["max_in_flight"] = max(st.stats["max_in_flight"], st.in_flight)
        try:
            return await self._answer(body, fault, st.stats["requests"])
        finally:
            st.in_flight -= 1

    def _reject_format(self, body: dict[str, Any]):  # type: ignore[no-untyped-def]
        kind = (body.get("response_format") or {}).get("type")
        f = self.state.faults
        if (kind == "json_schema" and f.reject_json_schema) or (kind == "json_object" and f.reject_json_object):
            self.state.stats["status_400"] += 1
            return 400, _error(f"response_format {kind} is not supported by this server", "invalid_request_error"), {}
        return None

    async def _answer(self, body: dict[str, Any], fault: str, request_no: int):  # type: ignore[no-untyped-def]
        if self.state.faults.latency_s:
            await asyncio.sleep(self.state.faults.latency_s)
        if fault == "hang":
            await self._hang.wait()
            return 0, b"", {}
        if fault == "drop":
            return 0, b"", {}
        if fault == "error":
            self.state.stats["status_500"] += 1
            return 500, _error("The server had an error while processing your request.", "server_error"), {}
        self.state.stats["status_200"] += 1
        return 200, completion(body, fault, request_no), {}


def _error(message: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": code, "param": None, "code": code}}


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return method, path, headers


def _response_head(status: int, length: int, keep: bool, extra: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", "Content-Type: application/json",
             f"Content-Length: {length}", f"Connection: {'keep-alive' if keep else 'close'}"]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class StubHandle:
    """Controls a stub running on its own event loop thread."""

    def __init__(self, server: StubServer, loop: asyncio.AbstractEventLoop, thread: threading.Thread,
                 aserver: asyncio.AbstractServer):
        self.server, self._loop, self._thread, self._aserver = server, loop, thread, aserver

    def stats(self) -> dict[str, Any]:
        return self._call(self.server.state.snapshot)

    def reset(self) -> None:
        self._call(self.server.state.reset)

    def configure(self, **faults: Any) -> None:
        def apply() -> None:
            self.server.state.faults.update(**faults)
            self.server.state.reset()
        self._call(apply)

    def _call(self, fn):  # type: ignore[no-untyped-def]
        async def run():  # type: ignore[no-untyped-def]
            return fn()
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._loop.call_soon_threadsafe(self.server._hang.set)
        self._loop.call_soon_threadsafe(self._aserver.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> "StubHandle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def serve(faults: Faults, host: str = "127.0.0.1", port: int = 0) -> tuple[StubServer, asyncio.AbstractServer]:
    server = StubServer(faults)
    aserver = await asyncio.start_server(server.handle, host, port, backlog=2048, limit=2**22)
    return server, aserver


def _drain(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel open connection handlers so the loop closes quietly."""
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    loop.close()


def start_stub_server(host: str = "127.0.0.1", port: int = 0, **faults: Any) -> tuple[str, StubHandle]:
    """Start on a daemon thread; returns (base_url ending in /v1, handle)."""
    loop = asyncio.new_event_loop()
    started: dict[str, Any] = {}
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        started["server"], started["aserver"] = loop.run_until_complete(serve(Faults(**faults), host, port))
        ready.set()
        loop.run_forever()
        _drain(loop)

    thread = threading.Thread(target=run, name="openai-stub", daemon=True)
    thread.start()
    ready.wait(10)
    bound = started["aserver"].sockets[0].getsockname()[1]
    return f"http://{host}:{bound}/v1", StubHandle(started["server"], loop, thread, started["aserver"])


def spawn_stub_process(host: str = "127.0.0.1", port: int = 0, **faults: Any) -> tuple[str, subprocess.Popen[str]]:
    """Run the stub in its own process (so it does not share the caller's GIL); returns (base_url, process)."""
    import os

    args, env = [sys.executable, "-m", "generation.backends.openai_stub", "--host", host, "--port", str(port)], None
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
            p.add_argument(flag, type=int if f.name == "seed" else float, default=f.default)
    p.add_argument("--api-key-env", help="environment variable holding the key to require (never printed)")
    p.add_argument("--script", default="", help="comma-separated faults for the first requests")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    import os

    args = vars(_arguments(argv))
    host, port, key_env = args.pop("host"), args.pop("port"), args.pop("api_key_env")
    script = [s for s in args.pop("script").split(",") if s]
    faults = Faults(**args, script=script, api_key=os.environ.get(key_env) if key_env else None)

    async def run() -> None:
        _, aserver = await serve(faults, host, port)
        shown = {k: v for k, v in asdict(faults).items() if k != "api_key"}
        print(f"openai stub on http://{host}:{aserver.sockets[0].getsockname()[1]}/v1 {shown}", flush=True)
        async with aserver:
            await aserver.serve_forever()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

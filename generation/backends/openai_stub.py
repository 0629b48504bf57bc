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
import hashlib
import hmac
import json
import math
import random
import re
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from typing import Any

FAULTS = ("ok", "error", "hang", "drop", "malformed", "length", "refusal", "ratelimit")
_MARKER = re.compile(r"\[\[stub:(\w+)(:once)?\]\]")
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests",
            500: "Internal Server Error"}


@dataclass
class Faults:
    latency_s: float = 0.0
    rps_limit: float | None = None  # token bucket; over it -> 429 with Retry-After
    rps_burst: float | None = None  # bucket size, default one second's worth
    error_rate: float = 0.0  # 500
    hang_rate: float = 0.0  # never answers (until the client gives up)
    drop_rate: float = 0.0  # closes the connection without an answer
    malformed_rate: float = 0.0  # content is not valid JSON
    length_rate: float = 0.0  # finish_reason=length with truncated content
    refusal_rate: float = 0.0  # message.refusal set, content null
    reject_json_schema: bool = False  # 400 for response_format json_schema (like many local servers)
    reject_json_object: bool = False  # 400 for response_format json_object too
    api_key: str | None = field(default=None, repr=False)
    seed: int = 0
    script: list[str] = field(default_factory=list)

    def update(self, **changes: Any) -> None:
        names = {f.name for f in fields(self)}
        for name, value in changes.items():
            if name not in names:
                raise TypeError(f"unknown stub fault {name!r}")
            setattr(self, name, value)


class _Bucket:
    def __init__(self, rate: float, burst: float):
        self.rate, self.burst, self.level, self.at = rate, burst, burst, time.monotonic()

    def take(self) -> float:
        """0 when a request may pass now, else seconds until one may."""
        now = time.monotonic()
        self.level = min(self.burst, self.level + (now - self.at) * self.rate)
        self.at = now
        if self.level >= 1:
            self.level -= 1
            return 0.0
        return (1 - self.level) / self.rate


class StubState:
    def __init__(self, faults: Faults):
        self.faults = faults
        self.stats: Counter[str] = Counter()
        self.in_flight = 0
        self._seen: set[str] = set()
        self.reset()

    def reset(self) -> None:
        self.rng = random.Random(self.faults.seed)
        self.bucket = None
        if self.faults.rps_limit:
            self.bucket = _Bucket(self.faults.rps_limit, self.faults.rps_burst or max(1.0, self.faults.rps_limit))
        self.stats.clear()
        self._seen.clear()

    def snapshot(self) -> dict[str, int]:
        return {**self.stats, "in_flight": self.in_flight}

    def pick_fault(self, body: dict[str, Any]) -> str:
        marked = self._marker(body)
        if marked:
            return marked
        if self.faults.script:
            return self.faults.script.pop(0)
        f, roll = self.faults, self.rng.random()
        for name, rate in (("error", f.error_rate), ("hang", f.hang_rate), ("drop", f.drop_rate),
                           ("malformed", f.malformed_rate), ("length", f.length_rate), ("refusal", f.refusal_rate)):
            if roll < rate:
                return name
            roll -= rate
        return "ok"

    def _marker(self, body: dict[str, Any]) -> str | None:
        text = _last_user(body)
        match = _MARKER.search(text)
        if not match:
            return None
        digest = hashlib.sha256(text.encode()).hexdigest()
        if match.group(2) and digest in self._seen:
            return None
        self._seen.add(digest)
        return match.group(1)


def _last_user(body: dict[str, Any]) -> str:
    users = [m.get("content") or "" for m in body.get("messages", []) if m.get("role") == "user"]
    text = users[0] if users else ""
    return text if isinstance(text, str) else json.dumps(text)


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def draft_for(body: dict[str, Any]) -> dict[str, str]:
    """A plausible English draft from the prompt: the stub cannot translate, so it describes and echoes."""
    text = _last_user(body)
    reference = text.split("Reference answer:", 1)[1].strip() if "Reference answer:" in text else text
    source = text.split("Reference answer:", 1)[0]
    if "Input" in source:
        source = source.split("Input", 1)[1].partition("\n")[2]
    numbers = " ".join(re.findall(r"\d+(?:\.\d+)?", reference))
    english = reference if reference.isascii() else f"The answer, in English, follows the reference. {numbers}"
    return {
        "transformed_input": source.strip() if source.isascii() else "The input text, rendered in English.",
        "reasoning": "First, read the instruction and the input carefully. Next, identify what is asked and "
                     "which facts in the input answer it. Finally, state the answer plainly in English.",
        "response": english.strip() or "No answer.",
    }


def completion(body: dict[str, Any], fault: str, request_no: int) -> dict[str, Any]:
    content: str | None = json.dumps(draft_for(body), ensure_ascii=False)
    finish, message = "stop", {"role": "assistant"}
    if fault == "malformed":
        content = content[: len(content) // 2] + ' <<not json'
    if fault == "length":
        content, finish = content[: max(8, len(content) // 3)], "length"
    budget = body.get("max_completion_tokens") or body.get("max_tokens")
    if budget and _tokens(content) > budget:
        content, finish = content[: budget * 4], "length"
    if fault == "refusal":
        content, message["refusal"] = None, "I'm sorry, but I can't help with that."
    prompt_text = "".join(str(m.get("content") or "") for m in body.get("messages", []))
    usage = {"prompt_tokens": _tokens(prompt_text), "completion_tokens": _tokens(content or "x")}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return {
        "id": f"chatcmpl-stub-{request_no}", "object": "chat.completion", "created": int(time.time()),
        "model": body.get("model", "stub"), "usage": usage,
        "choices": [{"index": 0, "finish_reason": finish, "message": {**message, "content": content}}],
    }


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

    def stats(self) -> dict[str, int]:
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

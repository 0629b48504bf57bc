"""The competitors every generation bench runs next to reasongen, configured equally, and the server's view.

- ``bare_sdk``: the `openai` SDK alone, as most scripts use it: ``chat.completions.create`` on its default
  (httpx) transport, a semaphore, ``json.loads`` of each reply. The yardstick the issue's targets name.
- ``bare_raw``: the same loop configured like reasongen's teacher: the SDK's aiohttp transport, the raw path
  (``client.post(..., cast_to=httpx.Response)``), orjson. Whatever reasongen gains over this is design, not
  transport.
- ``curator``: Bespoke Curator, run by bench/curator_bench.py in its own virtualenv (.venv-curator; it pins
  an older `openai` than this project, so it cannot share .venv). ``curator_available()`` says whether it is.
- ``InFlightSampler``: polls the test server's ``/stats`` while a run goes and reports how many requests it
  had in flight in steady state (median of the samples between 10% and 90% of the run) and at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import openai
import orjson

from generation.backends.chat_format import format_args, http_client_class, messages_for, pool_limits
from generation.backends.direct import DirectPost
from generation.records import TrainingView
from generation.templates import load_template

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-key-not-secret"
MODEL = "gpt-4o-mini"
CURATOR_PYTHON = Path(os.environ.get("REASONGEN_CURATOR_PYTHON", ROOT / ".venv-curator" / "bin" / "python"))


def prompts(n: int) -> list[Any]:
    template = load_template()
    langs = ["en", "ja", "zh"]
    return [template.render(TrainingView(i, f"b{i}", langs[i % 3], f"Question {i}: what is {i} + 1?",
                                         "Some context for the question.", f"The answer is {i + 1}."))
            for i in range(n)]


def stats_of(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url.replace("/v1", "/stats"), timeout=10) as reply:
        return json.load(reply)


def reset_stats(url: str) -> None:
    request = urllib.request.Request(url.replace("/v1", "/stats/reset"), data=b"", method="POST")
    urllib.request.urlopen(request, timeout=10).close()


class Run(NamedTuple):
    rps: float
    cpu_ms: float  # CPU ms per record in the process that ran it (user + system), the machine-load-proof figure


async def _loop(url: str, items: list[Any], concurrency: int, raw: bool) -> Run:
    transport = "aiohttp" if raw else "httpx"
    http = http_client_class(transport)(limits=pool_limits(concurrency + 8), timeout=60)
    client = openai.AsyncOpenAI(base_url=url, api_key=KEY, max_retries=0, http_client=http)
    gate = asyncio.Semaphore(concurrency)
    direct = DirectPost(client, concurrency + 8, 60) if raw else None  # the teacher's own POST

    async def one(prompt: Any) -> dict[str, Any]:
        async with gate:
            if direct is not None:
                body = {"model": MODEL, "messages": messages_for(prompt), "max_tokens": 1024,
                        **format_args("json_schema")}
                reply = orjson.loads(await direct.post(body))
                return orjson.loads(reply["choices"][0]["message"]["content"])  # type: ignore[no-any-return]
            done = await client.chat.completions.create(model=MODEL, messages=messages_for(prompt),
                                                        max_tokens=1024, **format_args("json_schema"))
            return json.loads(done.choices[0].message.content)  # type: ignore[no-any-return, arg-type]

    await asyncio.gather(*(one(p) for p in items[:concurrency]))  # warm the pool, as the others are warmed
    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(p) for p in items))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    if direct is not None:
        await direct.aclose()
    await client.close()
    return Run(len(items) / elapsed, cpu * 1000 / len(items))


def bare_sdk(url: str, items: list[Any], concurrency: int) -> Run:
    """Records/s of the SDK's default path (httpx transport, typed models, json)."""
    return asyncio.run(_loop(url, items, concurrency, raw=False))


def bare_raw(url: str, items: list[Any], concurrency: int) -> Run:
    """Records/s of the same loop on reasongen's transport (the teacher's direct aiohttp POST with the SDK's
    headers, generation/backends/direct.py) and JSON parser."""
    return asyncio.run(_loop(url, items, concurrency, raw=True))


def bare_raw_cpu_ms(url: str, items: list[Any], concurrency: int) -> float:
    """CPU ms per request of the raw loop alone, in a child process (the HTTP client's own cost)."""
    code = ("import sys, time, json; sys.path[:0] = [sys.argv[1], sys.argv[1] + '/bench']; import yardsticks as y; "
            "items = y.prompts(int(sys.argv[3])); y.bare_raw(sys.argv[2], items[:64], 64); "
            "print(json.dumps(y.bare_raw(sys.argv[2], items, int(sys.argv[4])).cpu_ms))")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT), url, str(len(items)), str(concurrency)],
                         capture_output=True, text=True, check=True, timeout=600)
    return float(out.stdout.strip().splitlines()[-1])


def curator_available() -> str | None:
    """None when Curator can run here, else why not."""
    if not CURATOR_PYTHON.exists():
        return f"no Curator virtualenv at {CURATOR_PYTHON} (run: bash bench/setup_curator.sh)"
    return None


def curator(url: str, records: int, concurrency: int, rpm: int | None = None, timeout_s: int = 900) -> dict[str, Any]:
    """Run bench/curator_bench.py in Curator's virtualenv on the same prompts; returns its JSON report."""
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as f:
        for p in prompts(records):
            f.write(json.dumps({"system": p.system, "user": p.user}, ensure_ascii=False) + "\n")
    args = [str(CURATOR_PYTHON), str(ROOT / "bench" / "curator_bench.py"), "--url", url, "--prompts", f.name,
            "--concurrency", str(concurrency)]
    if rpm:
        args += ["--rpm", str(rpm)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s)
    finally:
        os.unlink(f.name)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"curator_bench failed ({out.returncode}): {out.stderr[-1500:]}")
    # CPU of the whole child (start-up, imports, its dataset writing included): an upper bound of its per-record cost
    return {**json.loads(lines[-1]), "cpu_ms_per_record_incl_startup": cpu * 1000 / records}


_SAMPLER = """
import json, sys, time, urllib.request
url, every = sys.argv[1], float(sys.argv[2])
samples = []
try:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                samples.append((time.monotonic(), int(json.load(reply).get("in_flight", 0))))
        except OSError:
            pass
        time.sleep(every)
except KeyboardInterrupt:
    print(json.dumps(samples), flush=True)
"""


class InFlightSampler:
    """Samples the server's requests in flight every ``every`` seconds from a child process (so the polling
    costs the measured process nothing), between ``__enter__`` and ``__exit__``."""

    def __init__(self, url: str, every: float = 0.02):
        self.url, self.every = url.replace("/v1", "/stats"), every
        self.samples: list[tuple[float, int]] = []
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> "InFlightSampler":
        self._proc = subprocess.Popen([sys.executable, "-c", _SAMPLER, self.url, str(self.every)],
                                      stdout=subprocess.PIPE, text=True)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGINT)
        out, _ = self._proc.communicate(timeout=30)
        self.samples = [tuple(x) for x in json.loads(out.strip().splitlines()[-1])] if out.strip() else []

    def report(self) -> dict[str, Any]:
        busy = [(t, n) for t, n in self.samples if n > 0]
        if not busy:
            return {"steady_in_flight": 0, "max_in_flight_sampled": 0, "samples": 0}
        start, end = busy[0][0], busy[-1][0]
        middle = [n for t, n in busy if start + 0.1 * (end - start) <= t <= end - 0.1 * (end - start)] or [0]
        return {"steady_in_flight": statistics.median(middle), "max_in_flight_sampled": max(n for _, n in busy),
                "samples": len(middle)}


@contextlib.contextmanager
def busy_cpus(n: int) -> Iterator[None]:
    """``n`` CPU-bound processes beside the bench (a loaded worker host: senders that wake late), stopped after."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()

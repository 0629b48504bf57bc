"""Teacher backend benchmarks against the loopback OpenAI-compatible stub, each next to its yardstick.

(a) zero latency: records/s through the teacher backend over records/s of a bare asyncio loop of the
    `openai` SDK at the same concurrency (same prompts, same response_format, JSON parsed). Target >= 0.95.
(b) 0.5 s latency, no limit, concurrency 256: records/s over concurrency / latency. Target >= 0.90.
(c) a server allowing 50 requests/s, two processes sharing the Redis limiter: requests/s over 50
    (target >= 0.95) and the share of requests answered 429 (target <= 1%).

    python bench/teacher_bench.py                 # all three
    python bench/teacher_bench.py --part a --records 3000

The stub runs in its own process so it does not share the client's GIL. Part (c) needs Redis
(REASONGEN_BENCH_REDIS, default redis://127.0.0.1:6379/12) and uses its own key prefix.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import openai  # noqa: E402

from generation.backends.chat_format import format_args, http_client_class, messages_for, pool_limits  # noqa: E402
from generation.backends.openai_stub import spawn_stub_process  # noqa: E402
from generation.backends.teacher import TeacherBackend  # noqa: E402
from generation.ratelimit import Rates, make_limiter  # noqa: E402
from generation.records import TrainingView  # noqa: E402
from generation.templates import load_template  # noqa: E402

REDIS = os.environ.get("REASONGEN_BENCH_REDIS", "redis://127.0.0.1:6379/12")
KEY = "bench-key-not-secret"


def prompts(n: int) -> list:
    template = load_template()
    langs = ["en", "ja", "zh"]
    return [template.render(TrainingView(i, f"b{i}", langs[i % 3], f"Question {i}: what is {i} + 1?",
                                         "Some context for the question.", f"The answer is {i + 1}."))
            for i in range(n)]


def stats_of(url: str) -> dict:
    with urllib.request.urlopen(url.replace("/v1", "/stats"), timeout=10) as reply:
        return json.load(reply)


async def bare_sdk(url: str, items: list, concurrency: int, transport: str = "httpx") -> float:
    """The yardstick: the SDK alone, one gather over every prompt, a semaphore, json.loads of each reply.

    With its default (httpx) transport; ``transport="aiohttp"`` gives the SDK's optional aiohttp one.
    """
    http = http_client_class(transport)(limits=pool_limits(concurrency + 8), timeout=60)
    client = openai.AsyncOpenAI(base_url=url, api_key=KEY, max_retries=0, http_client=http)
    gate = asyncio.Semaphore(concurrency)

    async def one(prompt) -> dict:  # type: ignore[no-untyped-def]
        async with gate:
            reply = await client.chat.completions.create(model="gpt-4o-mini", messages=messages_for(prompt),
                                                         max_tokens=1024, **format_args("json_schema"))
            return json.loads(reply.choices[0].message.content)

    await asyncio.gather(*(one(p) for p in items[:concurrency]))  # warm the pool
    start = time.perf_counter()
    await asyncio.gather(*(one(p) for p in items))
    elapsed = time.perf_counter() - start
    await client.close()
    return len(items) / elapsed


def teacher_rate(url: str, items: list, concurrency: int, **options: Any) -> tuple[float, TeacherBackend]:
    backend = TeacherBackend("gpt-4o-mini", base_url=url, api_key=KEY, concurrency=concurrency, **options)
    backend.generate(items[:concurrency])  # warm the pool
    start = time.perf_counter()
    drafts = backend.generate(items)
    elapsed = time.perf_counter() - start
    failed = sum(d.failed for d in drafts)
    if failed:
        print(f"  warning: {failed} failed drafts", file=sys.stderr)
    return len(items) / elapsed, backend


def part_a(records: int, concurrency: int, rounds: int) -> dict:
    url, proc = spawn_stub_process(api_key=KEY)
    items = prompts(records)
    runs: dict[str, list[float]] = {"bare_sdk": [], "bare_sdk_aiohttp": [], "teacher": []}
    try:
        for _ in range(rounds):  # interleaved so drift in machine load hits all alike
            runs["bare_sdk"].append(asyncio.run(bare_sdk(url, items, concurrency)))
            runs["bare_sdk_aiohttp"].append(asyncio.run(bare_sdk(url, items, concurrency, "aiohttp")))
            rate, backend = teacher_rate(url, items, concurrency)
            backend.close()
            runs["teacher"].append(rate)
    finally:
        proc.terminate()
    med = {k: statistics.median(v) for k, v in runs.items()}
    return {"part": "a", "records": records, "concurrency": concurrency,
            **{f"{k}_rps": round(v, 1) for k, v in med.items()},
            "ratio": round(med["teacher"] / med["bare_sdk"], 3), "target": ">= 0.95",
            "ratio_vs_bare_aiohttp": round(med["teacher"] / med["bare_sdk_aiohttp"], 3),
            "rounds": {k: [round(x) for x in v] for k, v in runs.items()}}


def part_b(waves: int, concurrency: int, latency: float) -> dict:
    url, proc = spawn_stub_process(latency_s=latency)
    items = prompts(concurrency * waves)
    try:
        rate, backend = teacher_rate(url, items, concurrency)
        backend.close()
        in_flight = stats_of(url)["max_in_flight"]
        bare = asyncio.run(bare_sdk(url, items, concurrency))  # context: what the SDK alone manages here
    finally:
        proc.terminate()
    ideal = concurrency / latency
    return {"part": "b", "records": len(items), "concurrency": concurrency, "latency_s": latency,
            "teacher_rps": round(rate, 1), "ideal_rps": ideal, "ratio": round(rate / ideal, 3),
            "bare_sdk_rps": round(bare, 1), "bare_sdk_ratio": round(bare / ideal, 3),
            "max_in_flight_at_server": in_flight, "target": ">= 0.90"}


def part_c(records: int, limit: float) -> dict:
    url, proc = spawn_stub_process(rps_limit=limit)
    key = f"reasongen:bench:{uuid.uuid4().hex[:8]}"
    try:
        cmd = [sys.executable, __file__, "--worker", url, key, str(records // 2), str(limit)]
        workers = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(2)]
        reports = [json.loads(w.communicate(timeout=600)[0].strip().splitlines()[-1]) for w in workers]
        stats = stats_of(url)
    finally:
        proc.terminate()
    elapsed = max(r["end"] for r in reports) - min(r["start"] for r in reports)
    ok = sum(r["ok"] for r in reports)
    # At the server: completions accepted per second between the first and the last one.
    server_rps = (stats["accepted"] - 1) / (stats["last_accepted_at"] - stats["first_accepted_at"])
    answered_429 = stats.get("status_429", 0)
    return {"part": "c", "records": records, "server_limit_rps": limit, "rps_at_server": round(server_rps, 2),
            "ratio": round(server_rps / limit, 3), "rps_client_wall": round(ok / elapsed, 2),
            "requests": stats["requests"], "answered_429": answered_429,
            "share_429": round(answered_429 / max(1, stats["requests"]), 4), "target": ">= 0.95, 429 <= 1%"}


def worker(url: str, key: str, count: int, limit: float) -> None:
    """One of part (c)'s two processes: waits for its peer, then drafts through the shared limiter."""
    import redis

    client = redis.Redis.from_url(REDIS)
    client.incr(f"{key}:ready")
    while int(client.get(f"{key}:ready") or 0) < 2:
        time.sleep(0.005)
    limiter = make_limiter(Rates(requests_per_s=limit), REDIS, key)
    backend = TeacherBackend("gpt-4o-mini", base_url=url, api_key=KEY, concurrency=64, limiter=limiter)
    start = time.time()
    drafts = backend.generate(prompts(count))
    end = time.time()
    backend.close()
    client.delete(f"{key}:ready", f"{key}:requests", f"{key}:tokens")
    print(json.dumps({"ok": sum(not d.failed for d in drafts), "start": start, "end": end}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["a", "b", "c", "all"], default="all")
    p.add_argument("--records", type=int, default=3000, help="records for part a")
    p.add_argument("--concurrency", type=int, default=64, help="concurrency for part a")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds for part a (median reported)")
    p.add_argument("--waves", type=int, default=10, help="part b: records = 256 * waves")
    p.add_argument("--limit-records", type=int, default=600, help="records for part c (both processes)")
    p.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        url, key, count, limit = args.worker
        worker(url, key, int(count), float(limit))
        return
    parts = {"a": lambda: part_a(args.records, args.concurrency, args.rounds),
             "b": lambda: part_b(args.waves, 256, 0.5),
             "c": lambda: part_c(args.limit_records, 50.0)}
    for name in ("a", "b", "c") if args.part == "all" else (args.part,):
        print(json.dumps(parts[name]()), flush=True)


if __name__ == "__main__":
    main()

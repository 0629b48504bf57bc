"""Queue benchmarks, each with its competitors in the same run.

(a) End to end: enqueue a batch of N records until every draft is in PostgreSQL, with two `reasongen worker
    --queues teacher` processes (64 requests in flight each) against the zero-latency test server. Competitors,
    alternating with the queue runs (medians): the bare SDK loop at 64 in flight (target: queue >= 1.5x), the
    same loop on reasongen's transport/raw path/orjson at the same total in flight (128), and the same backend
    in-process (`generate` without a broker) at 128. Also the queue's own cost: CPU ms per record in the two
    workers, minus the raw loop's CPU ms per request (the HTTP client's share), measured in a child process.
(b) Enqueueing a 100,000-record batch: seconds from the call until every chunk is on the broker. Target < 10 s.
(c) A server admitting 50 requests/s in any one-second window, two workers sharing the Redis limiter
    (REASONGEN_TEACHER_RPM=3000): rate at the server over 50 (target >= 0.95) and the share answered 429
    (target <= 1%); then the same with no limit given (learned together through Redis).

    python bench/queue_bench.py                       # all, 5,000 / 100,000 / 1,000 records
    python bench/queue_bench.py --part a --records 2000 --repeats 1

Needs PostgreSQL (REASONGEN_BENCH_PG, default postgresql://postgres@127.0.0.1:5432/postgres) and Redis
(REASONGEN_BENCH_REDIS, default redis://127.0.0.1:6379/12); it creates and drops its own database and deletes
only its own queue keys.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import psutil  # noqa: E402
from pydantic import SecretStr  # noqa: E402
import redis  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402

import yardsticks as ys  # noqa: E402
from generation.ratelimit import limiter_key  # noqa: E402
from benchdb import fresh_database  # noqa: E402
from reasongen.bootstrap import Wiring, bootstrap  # noqa: E402
from reasongen.settings import Settings  # noqa: E402
from reasongen.testing.openai_server import spawn_stub_process  # noqa: E402
from storage.models import Batch, Draft, Record, WorkerHeartbeat  # noqa: E402
from workers import dispatch  # noqa: E402
from workers.app import queue_name  # noqa: E402
from workers.planning import BatchRequest, plan_batch  # noqa: E402

REDIS = os.environ.get("REASONGEN_BENCH_REDIS", "redis://127.0.0.1:6379/12")


def add_records(wired: Wiring, dataset: str, n: int) -> None:
    with wired.uow() as uow:
        ds = uow.records.get_or_create_dataset(dataset)
        rows = [dict(dataset_id=ds.id, key=f"r{i}", lang="ja" if i % 3 == 0 else "en", instruction=f"Question {i}?",
                     input="入力テキスト" if i % 3 == 0 else "", output=f"Answer {i}.", meta={},
                     content_hash=hashlib.sha256(f"{dataset}{i}".encode()).hexdigest()) for i in range(n)]
        for start in range(0, n, 10_000):
            uow.session.execute(insert(Record), rows[start : start + 10_000])
        uow.commit()


def start_workers(settings: Settings, base_url: str, n: int, threads: int, **env: str) -> list[subprocess.Popen]:
    environ = dict(os.environ, PYTHONPATH=str(ROOT), REASONGEN_DATABASE_URL=settings.database_url,
                   REASONGEN_BROKER_URL=settings.broker_url or "", REASONGEN_QUEUE_PREFIX=settings.queue_prefix,
                   OPENAI_BASE_URL=base_url, OPENAI_API_KEY=ys.KEY, REASONGEN_TEACHER_MODEL=ys.MODEL,
                   REASONGEN_TEACHER_CONCURRENCY=str(settings.teacher_concurrency), **env)
    reasongen = str(Path(sys.executable).with_name("reasongen"))
    return [subprocess.Popen([reasongen, "worker", "--queues", "teacher", "--concurrency", str(threads),
                              "--hostname", f"bench{i}-{uuid.uuid4().hex[:4]}@bench", "--loglevel", "WARNING"],
                             env=environ, cwd=ROOT, stdout=subprocess.DEVNULL, start_new_session=True)
            for i in range(n)]


def stop_workers(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(30)


def cpu_s(procs: list[subprocess.Popen]) -> float:
    """User + system CPU seconds the worker processes (and any children) have used so far."""
    total = 0.0
    for proc in procs:
        p = psutil.Process(proc.pid)
        for q in [p, *p.children(recursive=True)]:
            t = q.cpu_times()
            total += t.user + t.system
    return total


def run_batch(wired: Wiring, dataset: str, chunk_size: int) -> tuple[int, float]:
    start = time.perf_counter()
    planned = plan_batch(wired, BatchRequest(dataset=dataset, backend="teacher", chunk_size=chunk_size))
    dispatch.send_chunks(wired.settings, planned.chunk_ids, planned.backend)
    while True:
        with wired.uow() as uow:
            if uow.session.get(Batch, planned.batch_id).finished_at is not None:
                break
        time.sleep(0.05)
    return planned.batch_id, time.perf_counter() - start


def _wait_for_workers(wired: Wiring, n: int, since: float | None = None) -> None:
    """``n`` workers have a heartbeat (newer than ``since``, a time.time(): the previous run's stopped workers
    left theirs behind, and a run must not start while its own workers are still starting)."""
    from datetime import datetime, timezone

    after = datetime.fromtimestamp(since or 0, tz=timezone.utc)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with wired.uow() as uow:
            stmt = select(func.count()).select_from(WorkerHeartbeat).where(WorkerHeartbeat.last_seen > after)
            if uow.session.scalar(stmt) >= n:
                return
        time.sleep(0.2)
    raise RuntimeError("workers did not start within 90 s")


def _inprocess(settings: Settings, base_url: str, dataset: str, in_flight: int) -> float:
    from workers.inprocess import run_here

    local = settings.model_copy(update={"broker_url": None, "openai_base_url": base_url, "openai_api_key": SecretStr(ys.KEY),
                                        "teacher_model": ys.MODEL, "teacher_concurrency": in_flight})
    wired = bootstrap(local)
    start = time.perf_counter()
    planned = plan_batch(wired, BatchRequest(dataset=dataset, backend="teacher"))
    run_here(wired, planned.batch_id)
    elapsed = time.perf_counter() - start
    wired.close()
    return planned.total_records / elapsed


# --- (a) end to end --------------------------------------------------------------------------------------
def part_a(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Alternate queue and competitor runs (fresh records for each queue run) and compare the medians: the
    shared machine's load changes from minute to minute, and alternating spreads it over all competitors."""
    url, server = spawn_stub_process(api_key=ys.KEY)
    wired = bootstrap(settings.model_copy(update={"openai_base_url": url}))
    add_records(wired, "warm", 16 * args.workers)
    add_records(wired, "warm-local", 2 * settings.teacher_concurrency * args.workers)
    for i in range(args.repeats):
        add_records(wired, f"bench{i}", args.records)
        add_records(wired, f"local{i}", args.records)
    items = ys.prompts(args.records)
    total = settings.teacher_concurrency * args.workers
    runs: dict[str, list[float]] = {"queue": [], "bare_sdk": [], "bare_raw_same_total": [], "inprocess_same_total": []}
    cpu_ms: list[float] = []
    batch_ids = []
    try:
        procs = start_workers(settings, url, args.workers, args.concurrency)
        try:
            _wait_for_workers(wired, args.workers)
            run_batch(wired, "warm", 4)  # steady state: backends built, imports done in every worker
            _inprocess(settings, url, "warm-local", total)  # and in this process, for the in-process competitor
            for i in range(args.repeats):
                before = cpu_s(procs)
                batch_id, elapsed = run_batch(wired, f"bench{i}", args.chunk_size)
                cpu_ms.append((cpu_s(procs) - before) * 1000 / args.records)
                runs["queue"].append(args.records / elapsed)
                batch_ids.append(batch_id)
                runs["bare_sdk"].append(ys.bare_sdk(url, items, settings.teacher_concurrency).rps)
                runs["bare_raw_same_total"].append(ys.bare_raw(url, items, total).rps)
                runs["inprocess_same_total"].append(_inprocess(settings, url, f"local{i}", total))
        finally:
            stop_workers(procs)
        client_ms = ys.bare_raw_cpu_ms(url, items, settings.teacher_concurrency)
    finally:
        server.terminate()
    with wired.uow() as uow:
        drafts = uow.session.scalar(select(func.count()).select_from(Draft).where(Draft.batch_id.in_(batch_ids)))
        failed = uow.session.scalar(select(func.count()).select_from(Draft)
                                    .where(Draft.batch_id.in_(batch_ids), Draft.status == "failed"))
    wired.close()
    med = {k: statistics.median(v) for k, v in runs.items()}
    worker_ms = statistics.median(cpu_ms)
    return dict(part="a", records=args.records, workers=args.workers, in_flight_per_worker=settings.teacher_concurrency,
                runs=args.repeats, drafts=drafts, failed=failed,
                **{f"{k}_rps": [round(x, 1) for x in v] for k, v in runs.items()},
                **{f"median_{k}_rps": round(v, 1) for k, v in med.items()},
                ratio_vs_bare_sdk=round(med["queue"] / med["bare_sdk"], 3), target=">= 1.5",
                # Each round's queue run against the bare loop right after it: drift in machine load between
                # rounds cancels out here, not in the ratio of the medians.
                ratio_vs_bare_sdk_per_round=[round(q / b, 3) for q, b in zip(runs["queue"], runs["bare_sdk"])],
                median_ratio_vs_bare_sdk_per_round=round(statistics.median(
                    q / b for q, b in zip(runs["queue"], runs["bare_sdk"])), 3),
                ratio_vs_bare_raw_same_total=round(med["queue"] / med["bare_raw_same_total"], 3),
                ratio_vs_inprocess_same_total=round(med["queue"] / med["inprocess_same_total"], 3),
                worker_cpu_ms_per_record=round(worker_ms, 2), http_client_cpu_ms_per_request=round(client_ms, 2),
                queue_own_cpu_ms_per_record=round(worker_ms - client_ms, 2))


# --- (b) enqueue 100k ------------------------------------------------------------------------------------
def part_b(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    wired = bootstrap(settings)
    add_records(wired, "big", args.enqueue_records)
    start = time.perf_counter()
    planned = plan_batch(wired, BatchRequest(dataset="big", backend="fake", chunk_size=settings.chunk_size))
    dispatch.send_chunks(settings, planned.chunk_ids, planned.backend)
    elapsed = time.perf_counter() - start
    queued = redis.Redis.from_url(REDIS).llen(queue_name(settings, "teacher"))
    wired.close()
    return dict(part="b", records=args.enqueue_records, chunks=len(planned.chunk_ids), queued=queued,
                seconds=round(elapsed, 2), target_s=10)


# --- (c) a rate limit shared by two workers ------------------------------------------------------------------
def part_c(args: argparse.Namespace, settings: Settings, limit: float = 50.0) -> dict[str, Any]:
    out: dict[str, Any] = {"part": "c", "records": args.limit_records, "workers": args.workers, "busy_cpus": args.busy,
                           "server": f"at most {limit:g} requests in any one-second window"}
    url, server = spawn_stub_process(api_key=ys.KEY, rps_limit=limit, rps_window_s=1.0)
    wired = bootstrap(settings.model_copy(update={"openai_base_url": url}))
    try:
        for name, env in (("rpm_given", {"REASONGEN_TEACHER_RPM": str(int(limit * 60))}), ("learned", {})):
            dataset = f"rl-{name}"
            add_records(wired, dataset, args.limit_records)
            add_records(wired, f"{dataset}-warm", 16 * args.workers)
            started = time.time()
            procs = start_workers(settings, url, args.workers, args.concurrency, **env)
            try:
                _wait_for_workers(wired, args.workers, since=started)
                run_batch(wired, f"{dataset}-warm", 4)  # one-time costs paid in every worker (imports, backends,
                ys.reset_stats(url)                      # the language detector's models), as in part a
                time.sleep(1.1)
                with ys.busy_cpus(args.busy):
                    run_batch(wired, dataset, args.chunk_size)
            finally:
                stop_workers(procs)
            stats = ys.stats_of(url)
            span = stats["last_accepted_at"] - stats["first_accepted_at"]
            rate = (stats["accepted"] - 1) / span if span > 0 else 0.0
            refused = stats.get("status_429", 0)
            out[name] = {"rps_at_server": round(rate, 2), "ratio": round(rate / limit, 3),
                         "requests": stats["requests"], "answered_429": refused,
                         "share_429": round(refused / max(1, stats["requests"]), 4),
                         "pace": _pace_state(url)}
    finally:
        server.terminate()
        wired.close()
        client = redis.Redis.from_url(REDIS)
        for key in client.scan_iter(match=f"{limiter_key(url, ys.MODEL)}*"):  # what the workers learned
            client.delete(key)
    out["target"] = ">= 0.95 of the limit, <= 1% answered 429"
    return out


def _pace_state(url: str) -> dict[str, Any]:
    """What the workers' shared pace ended at (phase, requests/min, cuts), then forgotten: each run starts afresh."""
    client = redis.Redis.from_url(REDIS)
    key = limiter_key(url, ys.MODEL)
    raw = {k.decode(): v.decode() for k, v in client.hgetall(f"{key}:pace").items()}
    for stale in client.scan_iter(match=f"{key}*"):
        client.delete(stale)
    rps = float(raw.get("rps") or 0)
    return {"phase": raw.get("phase", "ceiling"), "paced_rpm": round(rps * 60) or None, "cuts": int(raw.get("cuts", 0))}


def cleanup(settings: Settings) -> None:
    client = redis.Redis.from_url(REDIS)
    for key in client.scan_iter(match=f"{settings.queue_prefix}*"):
        client.delete(key)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["a", "b", "c", "all"], default="all")
    p.add_argument("--records", type=int, default=5000)
    p.add_argument("--enqueue-records", type=int, default=100_000)
    p.add_argument("--limit-records", type=int, default=1000, help="records for each run of part c")
    p.add_argument("--limit", type=float, default=50.0, help="part c: requests/s the server admits per 1 s window")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--busy", type=int, default=0, help="part c: CPU-bound processes beside the run (a loaded host)")
    p.add_argument("--repeats", type=int, default=3, help="alternating runs for (a)")
    p.add_argument("--concurrency", type=int, default=8, help="threads (chunks at once) per worker")
    p.add_argument("--chunk-size", type=int, default=100)
    p.add_argument("--in-flight", type=int, default=64, help="requests in flight per worker process")
    args = p.parse_args()
    for part in ("a", "b", "c") if args.part == "all" else (args.part,):
        with fresh_database("rg_qbench") as url:
            prefix = f"qb{uuid.uuid4().hex[:6]}"
            settings = Settings(database_url=url, broker_url=REDIS, queue_prefix=f"{prefix}-",
                                teacher_concurrency=args.in_flight, redis_url=REDIS)
            try:
                result = part_c(args, settings, args.limit) if part == "c" else {"a": part_a, "b": part_b}[part](args, settings)
            finally:
                cleanup(settings)
            print(result, flush=True)


if __name__ == "__main__":
    main()

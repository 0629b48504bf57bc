"""Queue benchmarks, each with its competitor in the same run.

(a) End to end: enqueue a batch of N records until every draft is in PostgreSQL, with two `reasongen worker
    --queues teacher` processes against a zero-latency OpenAI-compatible stub, over the records/s of a bare
    asyncio loop of the `openai` SDK against the same stub (no database). Target: ratio >= 1.0.
(b) Enqueueing a 100,000-record batch: seconds from the call until every chunk is on the broker. Target < 10 s.

    python bench/queue_bench.py                       # both, 5,000 and 100,000 records
    python bench/queue_bench.py --part a --records 2000

Needs PostgreSQL (REASONGEN_BENCH_PG, default postgresql://postgres@127.0.0.1:5432/postgres) and Redis
(REASONGEN_BENCH_REDIS, default redis://127.0.0.1:6379/12); it creates and drops its own database and deletes
only its own queue keys.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402

from generation.restructure import restructure  # noqa: E402
from generation.templates import load_template  # noqa: E402
from reasongen.bootstrap import Wiring, bootstrap  # noqa: E402
from reasongen.settings import Settings  # noqa: E402
from benchdb import fresh_database  # noqa: E402
from storage.models import Batch, Draft, Record, WorkerHeartbeat  # noqa: E402
from workers import dispatch  # noqa: E402
from workers.app import queue_name  # noqa: E402
from workers.planning import BatchRequest, plan_batch  # noqa: E402

REDIS = os.environ.get("REASONGEN_BENCH_REDIS", "redis://127.0.0.1:6379/12")
API_KEY = "bench-key-not-secret"


@contextmanager
def stub_server() -> Iterator[str]:
    """The stub in its own process, so neither competitor shares a GIL with it."""
    proc = subprocess.Popen([sys.executable, "-m", "reasongen.testing.openai_server", "--port", "0"],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        yield re.search(r"(http://\S+/v1)", line).group(1)  # type: ignore[union-attr]
    finally:
        proc.terminate()
        proc.wait(10)


def add_records(wired: Wiring, dataset: str, n: int) -> None:
    with wired.uow() as uow:
        ds = uow.records.get_or_create_dataset(dataset)
        rows = [dict(dataset_id=ds.id, key=f"r{i}", lang="ja" if i % 3 == 0 else "en", instruction=f"Question {i}?",
                     input="入力テキスト" if i % 3 == 0 else "", output=f"Answer {i}.", meta={},
                     content_hash=hashlib.sha256(f"{dataset}{i}".encode()).hexdigest()) for i in range(n)]
        for start in range(0, n, 10_000):
            uow.session.execute(insert(Record), rows[start : start + 10_000])
        uow.commit()


# --- (a) end to end --------------------------------------------------------------------------------------
async def _bare_loop(base_url: str, prompts: list[Any], model: str, concurrency: int) -> float:
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key=API_KEY, max_retries=0)
    gate = asyncio.Semaphore(concurrency)

    async def one(p: Any) -> None:
        async with gate:
            await client.chat.completions.create(model=model, max_tokens=1024, messages=[
                {"role": "system", "content": p.system}, {"role": "user", "content": p.user}])

    start = time.perf_counter()
    await asyncio.gather(*(one(p) for p in prompts))
    elapsed = time.perf_counter() - start
    await client.close()
    return len(prompts) / elapsed


def bare_loop(wired: Wiring, base_url: str, dataset: str, concurrency: int) -> float:
    template = load_template()
    with wired.uow() as uow:
        ids = uow.records.ids(uow.records.dataset(dataset).id)
        prompts = [template.render(restructure(r)) for r in uow.records.by_ids(ids)]
    return asyncio.run(_bare_loop(base_url, prompts, wired.settings.teacher_model, concurrency))


def start_workers(settings: Settings, base_url: str, n: int, concurrency: int) -> list[subprocess.Popen]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), REASONGEN_DATABASE_URL=settings.database_url,
               REASONGEN_BROKER_URL=settings.broker_url or "", REASONGEN_QUEUE_PREFIX=settings.queue_prefix,
               OPENAI_BASE_URL=base_url, OPENAI_API_KEY=API_KEY,
               REASONGEN_TEACHER_CONCURRENCY=str(settings.teacher_concurrency))
    reasongen = str(Path(sys.executable).with_name("reasongen"))
    return [subprocess.Popen([reasongen, "worker", "--queues", "teacher", "--concurrency", str(concurrency),
                              "--hostname", f"bench{i}-{uuid.uuid4().hex[:4]}@bench", "--loglevel", "WARNING"],
                             env=env, cwd=ROOT, stdout=subprocess.DEVNULL, start_new_session=True)
            for i in range(n)]


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


def part_a(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Alternate queue and bare runs (fresh records for each queue run) and compare the medians: the shared
    machine's load changes from minute to minute, and alternating spreads it over both competitors."""
    wired = bootstrap(settings)
    add_records(wired, "warm", 16 * args.workers)
    for i in range(args.repeats):
        add_records(wired, f"bench{i}", args.records)
    queue, bare, batch_ids = [], [], []
    with stub_server() as base_url:
        procs = start_workers(settings, base_url, args.workers, args.concurrency)
        try:
            _wait_for_workers(wired, args.workers)
            run_batch(wired, "warm", 4)  # steady state: backends built, imports done in every worker
            for i in range(args.repeats):
                batch_id, elapsed = run_batch(wired, f"bench{i}", args.chunk_size)
                queue.append(args.records / elapsed)
                batch_ids.append(batch_id)
                bare.append(bare_loop(wired, base_url, f"bench{i}", settings.teacher_concurrency))
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(30)
    with wired.uow() as uow:
        drafts = uow.session.scalar(select(func.count()).select_from(Draft).where(Draft.batch_id.in_(batch_ids)))
        failed = uow.session.scalar(select(func.count()).select_from(Draft)
                                    .where(Draft.batch_id.in_(batch_ids), Draft.status == "failed"))
    wired.close()
    q, b = statistics.median(queue), statistics.median(bare)
    return dict(records=args.records, runs=args.repeats, drafts=drafts, failed=failed,
                queue_rps=[round(x, 1) for x in queue], bare_rps=[round(x, 1) for x in bare],
                median_queue_rps=round(q, 1), median_bare_rps=round(b, 1), ratio=round(q / b, 3))


def _wait_for_workers(wired: Wiring, n: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with wired.uow() as uow:
            if uow.session.scalar(select(func.count()).select_from(WorkerHeartbeat)) >= n:
                return
        time.sleep(0.2)
    raise RuntimeError("workers did not start within 60 s")


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
    return dict(records=args.enqueue_records, chunks=len(planned.chunk_ids), queued=queued,
                seconds=round(elapsed, 2), target_s=10)


def cleanup_queues(settings: Settings) -> None:
    client = redis.Redis.from_url(REDIS)
    for key in client.scan_iter(match=f"{settings.queue_prefix}*"):
        client.delete(key)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["a", "b", "all"], default="all")
    p.add_argument("--records", type=int, default=5000)
    p.add_argument("--enqueue-records", type=int, default=100_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="alternating queue/bare runs for (a)")
    p.add_argument("--concurrency", type=int, default=8, help="threads (chunks at once) per worker")
    p.add_argument("--chunk-size", type=int, default=100)
    p.add_argument("--in-flight", type=int, default=64, help="requests in flight per process (both competitors)")
    args = p.parse_args()
    for part in ("a", "b") if args.part == "all" else (args.part,):
        with fresh_database("rg_qbench") as url:
            settings = Settings(database_url=url, broker_url=REDIS, queue_prefix=f"qb{uuid.uuid4().hex[:6]}-",
                                teacher_concurrency=args.in_flight)
            try:
                result = part_a(args, settings) if part == "a" else part_b(args, settings)
            finally:
                cleanup_queues(settings)
            print(f"({part})", result, flush=True)


if __name__ == "__main__":
    main()

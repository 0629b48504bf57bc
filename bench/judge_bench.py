"""Judge throughput against generation on the same server, in the same run.

Generation: `generate --backend teacher` of N fresh records, in-process (run_here, the same chunk machinery as
the workers). Judging: `reasongen judge --backend teacher --policy P` over those N drafts (judgements stored,
the policy deciding each one in the same transaction). Same test server process, same model name, same
concurrency (64 in flight), same chunk size; the runs alternate (generate, judge, generate, judge, ...) and
the medians of records/s are compared. Target: judging >= 0.9 of generation.

    python bench/judge_bench.py                          # 2,000 records, 3 rounds, 50 ms server latency
    python bench/judge_bench.py --records 500 --rounds 1 --latency 0

Needs PostgreSQL (REASONGEN_BENCH_PG, default postgresql://postgres@127.0.0.1:5432/postgres); it creates and
drops its own database.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from pydantic import SecretStr  # noqa: E402

from benchdb import fresh_database  # noqa: E402
from judging.plan import JudgeRequest, plan_judge_batch  # noqa: E402
from reasongen.bootstrap import Wiring, bootstrap  # noqa: E402
from reasongen.settings import Settings  # noqa: E402
from reasongen.testing.openai_server import spawn_stub_process  # noqa: E402
from review.policy import PolicySpec, save_policy  # noqa: E402
from workers.inprocess import run_here  # noqa: E402
from workers.planning import BatchRequest, plan_batch  # noqa: E402

KEY = "bench-key-not-secret"
MODEL = "stub-model"


def add_records(wired: Wiring, dataset: str, n: int) -> None:
    from sqlalchemy import insert

    from storage.models import Record

    with wired.uow() as uow:
        ds = uow.records.get_or_create_dataset(dataset)
        rows = [dict(dataset_id=ds.id, key=f"r{i}", lang="ja" if i % 3 == 0 else "en",
                     instruction=f"Question {i}: how many bottles in {i % 9 + 1} hours at 180 an hour?",
                     input="機械は一時間に180本を詰めます。" if i % 3 == 0 else "", output=f"{180 * (i % 9 + 1)} bottles.",
                     uniqueness="high" if i % 4 == 0 else "low", meta={}, content_hash=f"{dataset}-{i:08d}")
                for i in range(n)]
        uow.session.execute(insert(Record), rows)
        uow.commit()


def timed(wired: Wiring, plan: Any) -> tuple[float, int]:
    start = time.perf_counter()
    planned = plan()
    outcomes = run_here(wired, planned.batch_id)
    elapsed = time.perf_counter() - start
    failed = sum(o.stats.failed for o in outcomes if o.stats)
    return planned.total_records / elapsed, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.05, help="server latency per request (seconds)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--chunk-size", type=int, default=100)
    args = parser.parse_args()
    url, server = spawn_stub_process(api_key=KEY, latency_s=args.latency)
    try:
        with fresh_database("rg_judge_bench") as db_url:
            settings = Settings(database_url=db_url, broker_url=None, redis_url=None, openai_base_url=url,
                                openai_api_key=SecretStr(KEY), teacher_model=MODEL,
                                teacher_concurrency=args.concurrency)
            wired = bootstrap(settings)
            with wired.uow() as uow:
                save_policy(uow, PolicySpec("bench", approve_min=4, reject_max=2))
                uow.commit()
            gen, judge = [], []
            for r in range(args.rounds):
                dataset = f"round{r}"
                add_records(wired, dataset, args.records)
                rate, failed = timed(wired, lambda: plan_batch(wired, BatchRequest(
                    dataset=dataset, backend="teacher", model=MODEL, chunk_size=args.chunk_size)))
                gen.append(rate)
                jrate, jfailed = timed(wired, lambda: plan_judge_batch(wired, JudgeRequest(
                    dataset=dataset, backend="teacher", model=MODEL, policy="bench", chunk_size=args.chunk_size)))
                judge.append(jrate)
                print(f"round {r + 1}: generate {rate:,.0f} rec/s ({failed} failed), "
                      f"judge+policy {jrate:,.0f} rec/s ({jfailed} failed)", flush=True)
            wired.close()
    finally:
        server.terminate()
        server.wait(10)
    g, j = statistics.median(gen), statistics.median(judge)
    print(f"\nmedian over {args.rounds} round(s) of {args.records} records, {args.concurrency} in flight, "
          f"server latency {args.latency * 1000:.0f} ms:")
    print(f"  generate      {g:,.0f} records/s")
    print(f"  judge+policy  {j:,.0f} records/s")
    print(f"  ratio judge/generate = {j / g:.2f} (target >= 0.90)")


if __name__ == "__main__":
    main()

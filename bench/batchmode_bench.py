"""Provider batch mode vs online mode, same records, same test server, same run.

N records (default 10,000) are generated twice into their own fresh PostgreSQL database: once in batch mode
(`generate --mode batch`: requests stored, uploaded as one input file, the job processed by the test server in
a simulated ``--job-seconds``, polled, the output file ingested) and once online (the teacher backend in-process,
64 requests in flight, as `generate` without a broker). Reported:

- batch mode: wall time from enqueue to every draft committed, and from the server finishing the job to every
  draft committed (the poll that sees the job done downloads and ingests; polls every ``--poll`` seconds);
- client CPU per record (this process: planning, building and uploading the file, polling, parsing and
  committing) in batch mode vs online mode (planning, requests, parsing and committing);
- the cost recorded for the same tokens: batch / online (expected 0.5).

With ``--judge`` each mode then judges its drafts the same way (`judge --mode batch` vs the online teacher
judge), reported in the same terms under ``judge``.

    python bench/batchmode_bench.py                   # 10,000 records, 20 s job
    python bench/batchmode_bench.py --records 2000 --job-seconds 5 --judge

Needs PostgreSQL (REASONGEN_BENCH_PG, default postgresql://postgres@127.0.0.1:5432/postgres); the test server
runs in its own process.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from sqlalchemy import func, insert, select  # noqa: E402

from benchdb import fresh_database  # noqa: E402
from reasongen.bootstrap import Wiring, bootstrap  # noqa: E402
from reasongen.settings import Settings  # noqa: E402
from reasongen.testing.openai_server import spawn_stub_process  # noqa: E402
from judging.plan import JudgeRequest, plan_judge_batch  # noqa: E402
from storage.models import Draft, Judgement, Record  # noqa: E402
from workers import provider_jobs  # noqa: E402
from workers.planning import BatchRequest, plan_batch  # noqa: E402

KEY = "bench-key-not-secret"
MODEL = "gpt-4o-mini"


def add_records(wired: Wiring, n: int) -> None:
    with wired.uow() as uow:
        ds = uow.records.get_or_create_dataset("bench")
        rows = [dict(dataset_id=ds.id, key=f"r{i}", lang="ja" if i % 3 == 0 else "en", instruction=f"Question {i}?",
                     input="入力テキスト" if i % 3 == 0 else "", output=f"Answer {i}.", meta={},
                     content_hash=hashlib.sha256(f"bench{i}".encode()).hexdigest()) for i in range(n)]
        for start in range(0, n, 10_000):
            uow.session.execute(insert(Record), rows[start : start + 10_000])
        uow.commit()


def totals(wired: Wiring, batch_id: int) -> dict[str, Any]:
    with wired.uow() as uow:
        row = uow.session.execute(select(func.count(), func.sum(Draft.prompt_tokens), func.sum(Draft.completion_tokens),
                                         func.sum(Draft.cost_usd), func.count().filter(Draft.status == "failed"))
                                  .where(Draft.batch_id == batch_id, Draft.is_current)).one()
    return dict(drafts=row[0], prompt_tokens=int(row[1] or 0), completion_tokens=int(row[2] or 0),
                cost_usd=float(row[3] or 0), failed=row[4])


def judge_totals(wired: Wiring, batch_id: int) -> dict[str, Any]:
    with wired.uow() as uow:
        row = uow.session.execute(select(func.count(), func.sum(Judgement.prompt_tokens),
                                         func.sum(Judgement.completion_tokens), func.sum(Judgement.cost_usd),
                                         func.count().filter(Judgement.error.is_not(None)))
                                  .where(Judgement.batch_id == batch_id)).one()
    return dict(judgements=row[0], prompt_tokens=int(row[1] or 0), completion_tokens=int(row[2] or 0),
                cost_usd=float(row[3] or 0), failed=row[4])


def batch_run(settings: Settings, n: int, poll_s: float, judge: bool) -> dict[str, Any]:
    with fresh_database("rg_batchmode_b") as url:
        wired = bootstrap(settings.model_copy(update={"database_url": url}))
        add_records(wired, n)
        batch_id = plan_batch(wired, BatchRequest(dataset="bench", backend="teacher", model=MODEL)).batch_id
        out = dict(totals_of(wired, batch_id, n, poll_s), **totals(wired, batch_id))
        if judge:
            judged = plan_judge_batch(wired, JudgeRequest(dataset="bench", backend="teacher", model=MODEL)).batch_id
            out["judge"] = dict(totals_of(wired, judged, n, poll_s), **judge_totals(wired, judged))
        wired.close()
    return out


def totals_of(wired: Wiring, batch_id: int, n: int, poll_s: float) -> dict[str, Any]:
    """Submit a planned batch as provider jobs and poll until every result is committed: times and CPU."""
    cpu0, t0 = time.process_time(), time.perf_counter()
    provider_jobs.start(wired, batch_id)
    submitted, cpu_submit = time.perf_counter() - t0, time.process_time() - cpu0
    client = provider_jobs.client_for(wired.settings)
    server_done = None
    while True:
        with wired.uow() as uow:
            if uow.batches.get(batch_id).finished_at is not None:
                break
            jobs = uow.provider_jobs.for_batch(batch_id)
            remote = [client.batches.retrieve(j.provider_batch_id) for j in jobs if j.provider_batch_id]
        if server_done is None and remote and all(r.status == "completed" for r in remote):
            server_done = time.perf_counter()  # the server has finished: from here it is all ours
        provider_jobs.poll(wired, batch_id=batch_id)
        time.sleep(poll_s)
    end, cpu = time.perf_counter(), time.process_time() - cpu0
    return dict(wall_s=end - t0, submit_s=submitted, after_server_s=end - (server_done or end),
                cpu_ms_per_record=1000 * cpu / n, submit_cpu_ms_per_record=1000 * cpu_submit / n)


def online_run(settings: Settings, n: int, judge: bool) -> dict[str, Any]:
    from workers.inprocess import run_here  # what `generate` (and `judge`) without a broker runs

    with fresh_database("rg_batchmode_o") as url:
        wired = bootstrap(settings.model_copy(update={"database_url": url}))
        add_records(wired, n)
        cpu0, t0 = time.process_time(), time.perf_counter()
        planned = plan_batch(wired, BatchRequest(dataset="bench", backend="teacher", model=MODEL, chunk_size=n))
        run_here(wired, planned.batch_id)
        end, cpu = time.perf_counter(), time.process_time() - cpu0
        out = dict(totals(wired, planned.batch_id), wall_s=end - t0, cpu_ms_per_record=1000 * cpu / n)
        if judge:
            cpu0, t0 = time.process_time(), time.perf_counter()
            judged = plan_judge_batch(wired, JudgeRequest(dataset="bench", backend="teacher", model=MODEL,
                                                          chunk_size=n)).batch_id
            run_here(wired, judged)
            end, cpu = time.perf_counter(), time.process_time() - cpu0
            out["judge"] = dict(judge_totals(wired, judged), wall_s=end - t0, cpu_ms_per_record=1000 * cpu / n)
        wired.close()
    return out


def ratios(batch: dict[str, Any], online: dict[str, Any]) -> dict[str, Any]:
    same_tokens = (batch["prompt_tokens"], batch["completion_tokens"]) == (online["prompt_tokens"],
                                                                           online["completion_tokens"])
    return dict(cpu_ratio_batch_over_online=batch["cpu_ms_per_record"] / online["cpu_ms_per_record"],
                cost_ratio_batch_over_online=batch["cost_usd"] / online["cost_usd"] if online["cost_usd"] else None,
                same_tokens=same_tokens)


def warm_up() -> None:
    """Pay the one-time costs (the teacher's imports, the language detector's models) before either run."""
    import generation.backends.teacher  # noqa: F401
    from generation.checks import check_draft
    from generation.records import DraftResult, TrainingView

    text = "First, read the instruction and the input carefully, then state the answer plainly in English. " * 3
    check_draft(TrainingView(0, "k", "en", "Question?", "", "Answer."), DraftResult(text, text, text))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=10_000)
    p.add_argument("--job-seconds", type=float, default=20.0, help="simulated processing time of a batch job")
    p.add_argument("--poll", type=float, default=1.0, help="seconds between polls")
    p.add_argument("--judge", action="store_true", help="then judge the drafts in each mode too")
    args = p.parse_args()
    warm_up()
    url, proc = spawn_stub_process(api_key=KEY, batch_seconds=args.job_seconds)
    try:
        settings = Settings(openai_base_url=url, openai_api_key=KEY, redis_url=None, broker_url=None,
                            prices={MODEL: (0.15, 0.60)}, batch_poll_min_s=args.poll, batch_poll_max_s=args.poll,
                            teacher_concurrency=64)
        batch = batch_run(settings, args.records, args.poll, args.judge)
        online = online_run(settings, args.records, args.judge)
    finally:
        proc.terminate()
        proc.wait(10)
    result = dict(records=args.records, job_seconds=args.job_seconds, poll_s=args.poll, batch=batch, online=online,
                  **ratios(batch, online))
    if args.judge:
        result["judge"] = ratios(batch["judge"], online["judge"])
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

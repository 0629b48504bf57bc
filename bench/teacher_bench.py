"""Generation throughput against the loopback OpenAI-compatible test server, every figure next to its competitors.

"in-process" is `reasongen generate` without a broker: plan a batch over records in PostgreSQL, run its chunks
here (workers.inprocess.run_here), drafts committed per sub-batch behind the fence. Competitors, same server,
same prompts, same run (see bench/yardsticks.py): the bare SDK loop (default transport), the same loop on
reasongen's transport/raw path/orjson, and Bespoke Curator (in its own virtualenv) where installed.

(a) zero latency, 64 in flight, interleaved rounds (median). Target: in-process >= 1.0x the bare SDK loop.
(b) 0.5 s latency, 256 in flight, 2,560 records. Target: in-process >= 1.3x Curator's records/s, and the
    server sees >= 0.9 x 256 requests in flight in steady state (sampled from its /stats). In-process runs
    configured as Curator is (AS_CURATOR: 256 fixed places, the request limit curator_bench.py gives Curator),
    and again with the default settings (adaptive limit from 4, pace learned from 50 req/s), reported beside it.
(c) a server admitting 50 requests/s in any one-second window: in-process with REASONGEN_TEACHER_RPM=3000
    (target >= 0.95 of the limit at the server, <= 1% answered 429), then with no limit given (learned), and
    Curator with the same RPM. Queued with two workers: bench/queue_bench.py --part c.

    python bench/teacher_bench.py                 # all parts
    python bench/teacher_bench.py --part a --records 1000 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from sqlalchemy import func, select  # noqa: E402

import yardsticks as ys  # noqa: E402
from benchdb import fresh_database  # noqa: E402
from queue_bench import add_records  # noqa: E402
from reasongen.bootstrap import bootstrap  # noqa: E402
from reasongen.settings import Settings  # noqa: E402
from reasongen.testing.openai_server import spawn_stub_process  # noqa: E402
from storage.models import Draft  # noqa: E402
from workers.inprocess import run_here  # noqa: E402
from workers.planning import BatchRequest, plan_batch  # noqa: E402


def inprocess(db_url: str, url: str, records: int, concurrency: int, **extra: Any) -> dict[str, Any]:
    """`generate` in this process over ``records`` fresh records; records/s from plan to last commit."""
    settings = Settings(database_url=db_url, broker_url=None, openai_base_url=url, openai_api_key=ys.KEY,
                        teacher_model=ys.MODEL, teacher_concurrency=concurrency, **extra)
    wired = bootstrap(settings)
    dataset = f"d{uuid.uuid4().hex[:8]}"
    add_records(wired, dataset, records)
    start, cpu = time.perf_counter(), time.process_time()
    planned = plan_batch(wired, BatchRequest(dataset=dataset, backend="teacher"))
    run_here(wired, planned.batch_id, fresh=True)  # as `generate` runs a batch it has just planned
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    with wired.uow() as uow:
        failed = uow.session.scalar(select(func.count()).select_from(Draft)
                                    .where(Draft.batch_id == planned.batch_id, Draft.status == "failed"))
    wired.close()
    return {"rps": records / elapsed, "failed": failed, "cpu_ms": cpu * 1000 / records}


def _curator(url: str, records: int, concurrency: int, rpm: int | None = None) -> dict[str, Any] | str:
    missing = ys.curator_available()
    if missing:
        return missing
    try:
        return ys.curator(url, records, concurrency, rpm)
    except Exception as exc:  # noqa: BLE001 - reported, not fatal: the other competitors still count
        return f"curator failed: {exc}"


def part_a(db_url: str, records: int, concurrency: int, rounds: int) -> dict[str, Any]:
    url, proc = spawn_stub_process(api_key=ys.KEY)
    items = ys.prompts(records)
    runs: dict[str, list[float]] = {"inprocess": [], "bare_sdk": [], "bare_raw": [], "curator": []}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    notes: list[str] = []
    try:
        inprocess(db_url, url, 2 * concurrency, concurrency)  # warm: imports, the language detector, as the loops warm
        for _ in range(rounds):  # interleaved so drift in machine load hits all alike
            ours = inprocess(db_url, url, records, concurrency)
            runs["inprocess"].append(ours["rps"])
            cpu["inprocess"].append(ours["cpu_ms"])
            for name, loop in (("bare_sdk", ys.bare_sdk), ("bare_raw", ys.bare_raw)):
                run = loop(url, items, concurrency)
                runs[name].append(run.rps)
                cpu[name].append(run.cpu_ms)
            cur = _curator(url, records, concurrency)
            if isinstance(cur, dict):
                runs["curator"].append(cur["records_per_s"])
                cpu["curator"].append(cur["cpu_ms_per_record_incl_startup"])
            else:
                notes.append(cur)
    finally:
        proc.terminate()
    med = {k: statistics.median(v) for k, v in runs.items() if v}
    out: dict[str, Any] = {"part": "a", "records": records, "concurrency": concurrency, "latency_s": 0,
                           **{f"{k}_rps": round(v, 1) for k, v in med.items()},
                           "ratio_vs_bare_sdk": round(med["inprocess"] / med["bare_sdk"], 3), "target": ">= 1.0",
                           "ratio_vs_bare_raw": round(med["inprocess"] / med["bare_raw"], 3),
                           "rounds": {k: [round(x) for x in v] for k, v in runs.items()},
                           "cpu_ms_per_record": {k: round(statistics.median(v), 2) for k, v in cpu.items() if v}}
    if "curator" in med:
        out["ratio_vs_curator"] = round(med["inprocess"] / med["curator"], 3)
    return {**out, "notes": sorted(set(notes))} if notes else out


# Part b's target row is configured as Curator is (bench/curator_bench.py): the same 256 places, fixed, and the same
# request limit, which curator_bench.py sets to 10,000,000 a minute when none is asked for (Curator needs one).
# Without a limit reasongen would learn one, ramping from 50 req/s; that is the "adaptive" (default) row.
AS_CURATOR: dict[str, Any] = {"teacher_adaptive": False, "teacher_rpm": 10_000_000}


def part_b(db_url: str, waves: int, concurrency: int, latency: float, rounds: int) -> dict[str, Any]:
    """Interleaved rounds (medians): in-process with fixed places (configured like Curator's
    max_concurrent_requests: the target's comparison), in-process with the default adaptive limit, Curator."""
    url, proc = spawn_stub_process(latency_s=latency, api_key=ys.KEY)
    records = concurrency * waves
    items = ys.prompts(records)
    out: dict[str, Any] = {"part": "b", "records": records, "concurrency": concurrency, "latency_s": latency,
                           "ideal_rps": concurrency / latency, "rounds": rounds}
    runs: dict[str, list[dict[str, Any]]] = {"fixed": [], "adaptive": [], "curator": []}
    notes: list[str] = []
    try:
        inprocess(db_url, url, concurrency, concurrency)  # warm: imports, the language detector
        for _ in range(rounds):
            for name, extra in (("fixed", AS_CURATOR), ("adaptive", {})):
                with ys.InFlightSampler(url) as sampler:
                    ours = inprocess(db_url, url, records, concurrency, **extra)
                runs[name].append({**ours, **sampler.report()})
            with ys.InFlightSampler(url) as sampler:
                cur = _curator(url, records, concurrency)
            if isinstance(cur, dict):
                runs["curator"].append({"rps": cur["records_per_s"], "cpu_ms": cur["cpu_ms_per_record_incl_startup"],
                                        **sampler.report()})
            else:
                notes.append(cur)
        for name, loop in (("bare_sdk", ys.bare_sdk), ("bare_raw", ys.bare_raw)):
            with ys.InFlightSampler(url) as sampler:  # the raw loop's figure is this machine's ceiling now
                run = loop(url, items, concurrency)
            out[f"{name}_rps"], out[f"{name}_cpu_ms_per_record"] = round(run.rps, 1), round(run.cpu_ms, 2)
            out[f"{name}_server_steady_in_flight"] = sampler.report()["steady_in_flight"]
    finally:
        proc.terminate()
    for name, rows in runs.items():
        if rows:
            out[name] = {"rps": _median(rows, "rps"), "server_steady_in_flight": _median(rows, "steady_in_flight"),
                         "cpu_ms_per_record": _median(rows, "cpu_ms"),
                         "rounds": [(round(r["rps"], 1), r["steady_in_flight"]) for r in rows]}
    if runs["curator"]:
        for name in ("fixed", "adaptive"):
            out[f"{name}_ratio_vs_curator"] = round(out[name]["rps"] / out["curator"]["rps"], 3)
    out["target"] = ">= 1.3x Curator (fixed places, as Curator); server steady in flight >= 0.9 x 256"
    return {**out, "notes": sorted(set(notes))} if notes else out


def _median(rows: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(float(r[key]) for r in rows), 2)


def _at_server(url: str) -> dict[str, Any]:
    stats = ys.stats_of(url)
    span = stats["last_accepted_at"] - stats["first_accepted_at"]
    rate = (stats["accepted"] - 1) / span if span > 0 else 0.0
    answered_429 = stats.get("status_429", 0)
    return {"rps_at_server": round(rate, 2), "requests": stats["requests"], "answered_429": answered_429,
            "share_429": round(answered_429 / max(1, stats["requests"]), 4)}


def part_c(db_url: str, records: int, limit: float) -> dict[str, Any]:
    rpm = int(limit * 60)
    url, proc = spawn_stub_process(rps_limit=limit, rps_window_s=1.0, api_key=ys.KEY)
    out: dict[str, Any] = {"part": "c", "records": records, "server_limit_rps": limit,
                           "server": "at most 50 requests in any one-second window"}
    try:
        # One-time costs of this process (the language detector's models take 2-5 s to load, holding the GIL)
        # are paid before the measured runs, as a worker pays them on its first chunk, not once per batch.
        inprocess(db_url, url, 16, 64)
        ys.reset_stats(url)
        time.sleep(1.1)  # a fresh window
        ours = inprocess(db_url, url, records, 64, teacher_rpm=rpm)
        server = _at_server(url)
        out["inprocess_rpm_given"] = {**server, "ratio": round(server["rps_at_server"] / limit, 3),
                                      "failed": ours["failed"]}
        ys.reset_stats(url)
        time.sleep(1.1)  # a fresh window
        ours = inprocess(db_url, url, records, 64)
        server = _at_server(url)
        out["inprocess_learned"] = {**server, "ratio": round(server["rps_at_server"] / limit, 3),
                                    "failed": ours["failed"]}
        ys.reset_stats(url)
        time.sleep(1.1)
        cur = _curator(url, records, 64, rpm)
        if isinstance(cur, dict):
            server = _at_server(url)
            out["curator_rpm_given"] = {**server, "ratio": round(server["rps_at_server"] / limit, 3)}
        else:
            out["curator"] = cur
    finally:
        proc.terminate()
    out["target"] = ">= 0.95 of the limit, <= 1% answered 429"
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["a", "b", "c", "all"], default="all")
    p.add_argument("--records", type=int, default=3000, help="records for part a")
    p.add_argument("--concurrency", type=int, default=64, help="requests in flight for part a")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds for parts a and b (medians reported)")
    p.add_argument("--waves", type=int, default=10, help="part b: records = 256 * waves")
    p.add_argument("--limit-records", type=int, default=600, help="records for each run of part c")
    p.add_argument("--limit", type=float, default=50.0, help="part c: requests/s the server admits per 1 s window")
    args = p.parse_args()
    parts = {"a": lambda db: part_a(db, args.records, args.concurrency, args.rounds),
             "b": lambda db: part_b(db, args.waves, 256, 0.5, args.rounds),
             "c": lambda db: part_c(db, args.limit_records, args.limit)}
    with fresh_database("rg_tbench") as db_url:
        for name in ("a", "b", "c") if args.part == "all" else (args.part,):
            print(json.dumps(parts[name](db_url)), flush=True)


if __name__ == "__main__":
    main()

"""Chaos and load run: nothing lost, nothing duplicated, no chunk stuck, no key leaked.

    python bench/chaos --records 10000

Three teacher workers on a private Redis and a private PostgreSQL, against a local OpenAI-compatible server
that injects faults (10% 500s, 2% hanging requests, 5% malformed JSON, 5% truncated output, a requests/s
limit). Meanwhile a worker is SIGKILLed three times, Redis restarts empty once and PostgreSQL restarts once.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from report import outcome, progress, secret_leaks  # noqa: E402
from services import PG_BIN, PrivatePostgres, PrivateRedis, Processes, reasongen, wait_until  # noqa: E402

from storage.db import make_engine  # noqa: E402


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--chunk-size", type=int, default=50)
    p.add_argument("--rps-limit", type=float, default=400.0, help="the server's own requests/s limit")
    p.add_argument("--timeout", type=float, default=1800.0, help="give up after this many seconds")
    p.add_argument("--pg-port", type=int, default=55432)
    p.add_argument("--redis-port", type=int, default=56379)
    p.add_argument("--stub-port", type=int, default=58199)
    return p.parse_args()


def write_records(path: Path, n: int) -> None:
    langs = [("en", "Explain step {i} of a designed experiment.", ""), ("ja", "実験計画の手順{i}を説明してください。", "品質工学"),
             ("zh", "请解释实验设计的第{i}步。", "")]
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            lang, instruction, inp = langs[i % 3]
            row = {"id": f"c{i}", "lang": lang, "instruction": instruction.format(i=i), "input": inp,
                   "output": f"Step {i} sets {i % 7} factors at 2 levels.", "field": "qe", "uniqueness": "low"}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def environment(pg: PrivatePostgres, redis: PrivateRedis, stub_url: str, key: str, rps: float) -> dict[str, str]:
    # The shared limiter keeps all workers under the server's limit instead of discovering it by 429s.
    return {**os.environ, "REASONGEN_TEACHER_RPM": str(int(rps * 60 * 0.9)), "REASONGEN_DATABASE_URL": pg.url, "REASONGEN_BROKER_URL": redis.url,
            "OPENAI_API_KEY": key, "OPENAI_BASE_URL": stub_url, "REASONGEN_TEACHER_MODEL": "chaos-teacher",
            "REASONGEN_TEACHER_TIMEOUT": "3", "REASONGEN_TEACHER_CONCURRENCY": "64",
            "REASONGEN_LEASE_SECONDS": "20", "REASONGEN_SWEEP_INTERVAL": "3", "REASONGEN_REQUEUE_AFTER": "10",
            "REASONGEN_HEARTBEAT_INTERVAL": "2", "REASONGEN_MAX_ATTEMPTS": "8", "PYTHONUNBUFFERED": "1"}


def start_stack(args: argparse.Namespace, root: Path, key: str):  # type: ignore[no-untyped-def]
    pg, redis = PrivatePostgres(root, args.pg_port), PrivateRedis(root, args.redis_port)
    pg.start()
    redis.start()
    stub_url = f"http://127.0.0.1:{args.stub_port}/v1"
    procs = Processes(root, environment(pg, redis, stub_url, key, args.rps_limit))
    procs.env["CHAOS_KEY"] = key
    procs.start("stub", [sys.executable, "-m", "reasongen.testing.openai_server", "--port", str(args.stub_port),
                         "--error-rate", "0.10", "--hang-rate", "0.02", "--malformed-rate", "0.05",
                         "--length-rate", "0.05", "--rps-limit", str(args.rps_limit), "--api-key-env", "CHAOS_KEY"])
    procs.start("broker-traffic", ["redis-cli", "-p", str(args.redis_port), "monitor"])
    return pg, redis, procs


def run_cli(procs: Processes, *args: str) -> str:
    import subprocess

    done = subprocess.run(reasongen(*args), env=procs.env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"reasongen {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def enqueue(procs: Processes, root: Path, n: int, chunk_size: int) -> int:
    write_records(root / "chaos.jsonl", n)
    run_cli(procs, "db", "upgrade")
    run_cli(procs, "ingest", str(root / "chaos.jsonl"), "--dataset", "chaos")
    out = run_cli(procs, "generate", "--dataset", "chaos", "--backend", "teacher", "--chunk-size", str(chunk_size),
                  "--json")
    return int(json.loads(out)["batch"])


def start_workers(procs: Processes, n: int) -> list[str]:
    names = [f"worker{i}" for i in range(n)]
    for name in names:
        procs.start(name, reasongen("worker", "--queues", "teacher", "--concurrency", "4", "--hostname",
                                    f"{name}@chaos", "--loglevel", "WARNING"))
    procs.start("sweeper", reasongen("sweep", "--forever"))
    return names


def chaos_plan(workers: list[str]) -> list[tuple[float, str, str]]:
    """(fraction of drafts written, action, target): spread over the run."""
    return [(0.10, "kill", workers[0]), (0.25, "redis", ""), (0.40, "kill", workers[1]),
            (0.55, "postgres", ""), (0.70, "kill", workers[2 % len(workers)])]


def act(action: str, target: str, procs: Processes, pg: PrivatePostgres, redis: PrivateRedis) -> None:
    print(f"  chaos: {action} {target}", flush=True)
    if action == "kill":
        procs.kill(target)
        time.sleep(1.0)
        procs.restart(target)
    elif action == "redis":
        procs.kill("broker-traffic")
        redis.restart_empty()
        procs.restart("broker-traffic")
    elif action == "postgres":
        pg.restart()


def drive(engine, batch_id: int, total: int, plan, procs, pg, redis, timeout: float) -> float:  # type: ignore[no-untyped-def]
    start, pending = time.monotonic(), list(plan)
    while time.monotonic() - start < timeout:
        try:
            written, state = progress(engine, batch_id), outcome(engine, batch_id)["batch_status"]
        except Exception as exc:  # noqa: BLE001 - PostgreSQL may be restarting
            print(f"  (database unavailable: {type(exc).__name__})", flush=True)
            time.sleep(1)
            continue
        while pending and written >= pending[0][0] * total:
            act(pending[0][1], pending[0][2], procs, pg, redis)
            pending.pop(0)
        if state not in ("queued", "running") and not pending:
            return time.monotonic() - start
        time.sleep(0.5)
    raise TimeoutError(f"batch {batch_id} did not finish in {timeout:.0f}s")


def stub_stats(port: int) -> dict[str, int]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as resp:
        return json.load(resp)


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup in `finally` on timeout(1)
    args = arguments()
    if PG_BIN is None:
        sys.exit("needs PostgreSQL server binaries (/usr/lib/postgresql/*/bin)")
    root = Path(tempfile.mkdtemp(prefix="reasongen-chaos-"))
    key = "sk-chaos-" + secrets.token_hex(16)
    pg, redis, procs = start_stack(args, root, key)
    try:
        wait_until(lambda: _up(args.stub_port), 20, "stub server")
        batch_id = enqueue(procs, root, args.records, args.chunk_size)
        workers = start_workers(procs, args.workers)
        engine = make_engine(pg.url, pool_pre_ping=True)
        elapsed = drive(engine, batch_id, args.records, chaos_plan(workers), procs, pg, redis, args.timeout)
        print_report(outcome(engine, batch_id), stub_stats(args.stub_port), args.records, elapsed,
                     secret_leaks(key, [str(PG_BIN / "pg_dump"), "-h", "127.0.0.1", "-p", str(args.pg_port),
                                        "-U", "postgres", "postgres"], root), root)
    finally:
        procs.stop_all()
        redis.stop()
        pg.stop()
        shutil.rmtree(pg.data, ignore_errors=True)  # the logs stay for reading


def _up(port: int) -> bool:
    try:
        stub_stats(port)
        return True
    except OSError:
        return False


def print_report(out: dict, stub: dict, n: int, elapsed: float, leaks: dict[str, bool], root: Path) -> None:  # type: ignore[type-arg]
    print("server:", ", ".join(f"{k}={v}" for k, v in sorted(stub.items())))
    per_record = stub.get("requests", 0) / max(n, 1)
    rows = [("records", out["records"]), ("records with exactly one current draft", out["one_current_draft"]),
            ("records failed with a reason", out["failed_with_reason"]), ("records lost", out["lost"]),
            ("records duplicated", out["duplicated"]), ("chunks stuck", out["chunks_stuck"]),
            ("teacher requests per record", f"{per_record:.3f}"), ("batch status", out["batch_status"]),
            ("wall time (s)", f"{elapsed:.1f}"), ("API key found in", ", ".join(k for k, v in leaks.items() if v) or "nowhere")]
    width = max(len(r[0]) for r in rows)
    print("\n".join(f"{name:<{width}}  {value}" for name, value in rows))
    ok = out["lost"] == 0 and out["duplicated"] == 0 and out["chunks_stuck"] == 0 and per_record <= 1.5 \
        and not any(leaks.values())
    print(f"\nverdict: {'PASS' if ok else 'FAIL'} (logs in {root})")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

"""Chaos and load run: what a user pays for and waits for, with the queue's DEFAULT settings.

    python bench/chaos --records 10000

Three teacher workers, a train worker and `reasongen sweep --forever` on a private Redis and a private
PostgreSQL. First a fault-free batch measures the baseline time T0. Then the chaos batch (`--then train`) runs
against the test server injecting faults (10% 500s, 2% hanging requests, 5% malformed JSON, 5% truncated
output, a requests/s limit) through a counting proxy, while worker 0, 1 and 2 are SIGKILLed, Redis restarts
empty, the PostgreSQL postmaster is SIGKILLed and restarted, and the server is slow for a minute. At the
deadline (3 x T0) every record must have a terminal draft (good, or failed with a reason). Its drafts are then
approved, the follow-up trains a tiny model, and the train worker is SIGKILLed mid-training: the run must
complete once, resumed from its checkpoint. Paid duplicates are counted at the server (bench/chaos/proxy.py).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

import proxy as counting  # noqa: E402
from report import Rate, failure_reasons, outcome, progress, secret_leaks, tail, training  # noqa: E402
from services import PG_BIN, PrivatePostgres, PrivateRedis, Processes, reasongen, wait_until  # noqa: E402

from storage.db import make_engine  # noqa: E402

FAULTS = ["--error-rate", "0.10", "--hang-rate", "0.02", "--malformed-rate", "0.05", "--length-rate", "0.05"]
TAIL = 600  # records left: from here the timeline shows every second the chunks that hold them
TRAIN_CONFIG = {"max_steps": 24, "batch_size": 4, "logging_steps": 2, "save_steps": 4, "max_length": 128,
                "lora_r": 4, "lora_alpha": 8}


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--chunk-size", type=int, default=50)
    p.add_argument("--rps-limit", type=float, default=400.0, help="the server's own requests/s limit")
    p.add_argument("--deadline-factor", type=float, default=3.0, help="deadline = this x the fault-free time")
    p.add_argument("--slow-delay", type=float, default=1.5, help="added to every request in the slow minute")
    p.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds")
    p.add_argument("--no-train", action="store_true", help="skip the training phase")
    # Below Linux's ephemeral range (32768-60999): a port in it may be some outgoing connection's local port,
    # and a private server then fails to bind it (seen as "Address already in use" on a busy machine).
    for name, port in (("pg", 25432), ("redis", 26379), ("stub", 28199), ("clean-stub", 28198), ("proxy", 28197)):
        p.add_argument(f"--{name}-port", type=int, default=port)
    return p.parse_args()


def write_records(path: Path, n: int, tag: str) -> None:
    langs = [("en", "Explain step {i} of a designed {tag}.", ""), ("ja", "{tag}の手順{i}を説明してください。", "品質工学"),
             ("zh", "请解释{tag}的第{i}步。", "")]
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            lang, instruction, inp = langs[i % 3]
            row = {"id": f"{tag}{i}", "lang": lang, "instruction": instruction.format(i=i, tag=tag), "input": inp,
                   "output": f"Step {i} sets {i % 7} factors at 2 levels.", "field": "qe", "uniqueness": "low"}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def environment(pg: PrivatePostgres, redis: PrivateRedis, key: str, rps: float, model: str) -> dict[str, str]:
    # Queue settings (lease, attempts, requeue, sweep, heartbeat) are the defaults: none is set here. The
    # teacher is configured for this server: a limiter 10% under its rate limit, and a 3 s request timeout
    # because the server hangs 2% of requests on purpose (the 120 s default would only make the run longer).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REASONGEN_", "OPENAI_"))}
    root = str(Path(__file__).resolve().parents[2])  # workers run this checkout's code, not the installed one
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return {**env, "REASONGEN_DATABASE_URL": pg.url, "REASONGEN_BROKER_URL": redis.url, "OPENAI_API_KEY": key,
            "REASONGEN_TEACHER_RPM": str(int(rps * 60 * 0.9)), "REASONGEN_TEACHER_MODEL": "chaos-teacher",
            "REASONGEN_TEACHER_TIMEOUT": "3", "REASONGEN_TEACHER_CONCURRENCY": "64",
            "REASONGEN_LOCAL_MODEL": model, "PYTHONUNBUFFERED": "1"}


def start_stack(args: argparse.Namespace, root: Path, key: str):  # type: ignore[no-untyped-def]
    from training.tiny import make_tiny_model

    pg, redis = PrivatePostgres(root, args.pg_port), PrivateRedis(root, args.redis_port)
    pg.start()
    redis.start()
    procs = Processes(root, environment(pg, redis, key, args.rps_limit, str(make_tiny_model(root / "tiny-phi"))))
    procs.env["CHAOS_KEY"] = key
    server = [sys.executable, "-m", "reasongen.testing.openai_server", "--rps-limit", str(args.rps_limit),
              "--api-key-env", "CHAOS_KEY"]
    procs.start("stub", [*server, "--port", str(args.stub_port), *FAULTS])
    procs.start("clean-stub", [*server, "--port", str(args.clean_stub_port)])
    procs.start("broker-traffic", ["redis-cli", "-p", str(args.redis_port), "monitor"])
    proxy = counting.start(f"http://127.0.0.1:{args.stub_port}/v1", args.proxy_port)
    for port in (args.stub_port, args.clean_stub_port):
        wait_until(lambda p=port: _up(p), 20, "test server")
    return pg, redis, procs, proxy


def run_cli(procs: Processes, *args: str, **env: str) -> str:
    done = subprocess.run(reasongen("--debug", *args), env={**procs.env, **env}, capture_output=True, text=True,
                          cwd=procs.root)
    if done.returncode != 0:
        raise RuntimeError(f"reasongen {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def enqueue(procs: Processes, root: Path, tag: str, n: int, chunk_size: int, port: int, *extra: str) -> int:
    write_records(root / f"{tag}.jsonl", n, tag)
    run_cli(procs, "ingest", str(root / f"{tag}.jsonl"), "--dataset", tag)
    out = run_cli(procs, "generate", "--dataset", tag, "--backend", "teacher", "--chunk-size", str(chunk_size),
                  "--json", *extra, OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1")  # stored on the batch
    return int(json.loads(out)["batch"])


def start_workers(procs: Processes, n: int) -> list[str]:
    names = [f"worker{i}" for i in range(n)]
    for name in names:
        procs.start(name, reasongen("worker", "--queues", "teacher", "--hostname", f"{name}@chaos",  # default threads
                                    "--loglevel", "WARNING"))
    procs.start("trainer", reasongen("worker", "--queues", "train", "--hostname", "trainer@chaos",
                                     "--loglevel", "WARNING"))
    procs.start("sweeper", reasongen("sweep", "--forever"))
    return names


def wait_ended(engine, batch_id: int, timeout: float) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    wait_until(lambda: _safe(lambda: outcome(engine, batch_id)["batch_ended"]), timeout, f"batch {batch_id}")
    return time.monotonic() - start


def chaos_plan(workers: list[str]) -> list[tuple[float, str, str]]:
    """(fraction of drafts written, action, target): spread over the run."""
    return [(0.10, "kill", workers[0]), (0.25, "redis", ""), (0.35, "slow", ""), (0.40, "kill", workers[1]),
            (0.55, "postgres", ""), (0.70, "kill", workers[2 % len(workers)])]


def act(action: str, target: str, procs: Processes, pg: PrivatePostgres, redis: PrivateRedis, proxy, args,
        t: float = 0.0) -> None:  # type: ignore[no-untyped-def]
    print(f"  chaos at {time.strftime('%H:%M:%S')} (t={t:.1f}s): {action} {target}", flush=True)
    if action == "slow":
        proxy.slow(60.0, args.slow_delay)
        return
    proxy.event(f"{action} {target}")
    if action == "kill":
        procs.kill(target)
        time.sleep(1.0)
        procs.restart(target)
    elif action == "redis":
        procs.kill("broker-traffic")
        redis.restart_empty()
        procs.restart("broker-traffic")
    elif action == "postgres":
        pg.crash()
    proxy.event(f"{action} {target} over")


def drive(engine, batch_id: int, total: int, plan, deadline: float, ctx) -> dict:  # type: ignore[no-untyped-def]
    """Run the plan; at the deadline, snapshot what is still without a terminal draft."""
    start, pending, at_deadline, shown = time.monotonic(), list(plan), None, -10.0
    before: dict[str, object] | None = None  # the last state read before the deadline
    rate = Rate()  # requests/s at the server since the last line: in the slow minute, what the limiters let through
    while time.monotonic() - start < ctx[-1].timeout:
        written = _safe(lambda: progress(engine, batch_id))
        state = _safe(lambda: outcome(engine, batch_id))
        if written is None or state is None:
            time.sleep(1)
            continue
        read_at = round(time.monotonic() - start, 1)
        in_tail = 0 < state["without_draft"] <= TAIL
        if time.monotonic() - shown >= (1 if in_tail else 5):  # a timeline, to see where the time goes
            shown = time.monotonic()
            print(f"  t={shown - start:6.1f}s drafts written {written}, records without a draft "
                  f"{state['without_draft']}, requests {ctx[3].requests} ({rate(ctx[3].requests):.0f}/s); teacher "
                  f"concurrency limit "
                  f"{state['teacher_limit']}", flush=True)
            if in_tail:  # what the last records wait for
                print("\n".join(f"    {line}" for line in _safe(lambda: tail(engine, batch_id)) or []), flush=True)
        while pending and written >= pending[0][0] * total:
            act(pending[0][1], pending[0][2], *ctx, t=time.monotonic() - start)
            pending.pop(0)
        if at_deadline is None and read_at >= deadline:  # the last look before it: never fewer stuck than there were
            at_deadline = before or dict(state, at_s=read_at)
        if state["batch_ended"] and not pending:
            return dict(final=state, elapsed=read_at, at_deadline=at_deadline or dict(state, at_s=read_at))
        before = dict(state, at_s=read_at)
        time.sleep(0.5)
    raise TimeoutError(f"batch {batch_id} did not finish in {ctx[-1].timeout:.0f}s")


def train_phase(engine, procs: Processes, batch_id: int, timeout: float = 900) -> dict:  # type: ignore[no-untyped-def]
    """Approve the chaos batch's drafts, run its follow-up, SIGKILL the train worker mid-training."""
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(text("UPDATE drafts SET status = 'approved' WHERE batch_id = :b AND status = 'pending'"),
                     {"b": batch_id})
        conn.execute(text("UPDATE batches SET params = params || CAST(:p AS jsonb) WHERE id = :b"),
                     {"b": batch_id, "p": json.dumps({"train_config": TRAIN_CONFIG})})
    run_cli(procs, "retry-followup", str(batch_id))
    wait_until(lambda: (_safe(lambda: training(engine, batch_id)["last_step"]) or 0) >= 6, timeout, "training")
    print(f"  chaos at {time.strftime('%H:%M:%S')}: kill trainer (mid-training)", flush=True)
    procs.kill("trainer")
    killed_at_step = training(engine, batch_id)["last_step"]
    time.sleep(1.0)
    procs.restart("trainer")
    started = time.monotonic()
    wait_until(lambda: _safe(lambda: training(engine, batch_id)["followup"]) in ("done", "failed"), timeout,
               "follow-up after the kill")
    return dict(training(engine, batch_id), killed_at_step=killed_at_step,
                recovered_in_s=round(time.monotonic() - started, 1))


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup in `finally` on timeout(1)
    args = arguments()
    if PG_BIN is None:
        sys.exit("needs PostgreSQL server binaries (/usr/lib/postgresql/*/bin)")
    root = Path(tempfile.mkdtemp(prefix="reasongen-chaos-"))
    root.chmod(0o755)  # the postgres user runs the server in here
    key = "sk-chaos-" + secrets.token_hex(16)
    pg, redis, procs, proxy = start_stack(args, root, key)
    try:
        run_cli(procs, "db", "upgrade")
        workers = start_workers(procs, args.workers)
        engine = make_engine(pg.url, pool_pre_ping=True)
        base = enqueue(procs, root, "baseline", args.records, args.chunk_size, args.clean_stub_port)
        t0 = wait_ended(engine, base, args.timeout)
        print(f"  fault-free baseline: {t0:.1f} s; deadline {args.deadline_factor * t0:.1f} s", flush=True)
        batch_id = enqueue(procs, root, "chaos", args.records, args.chunk_size, args.proxy_port, "--then", "train")
        run = drive(engine, batch_id, args.records, chaos_plan(workers), args.deadline_factor * t0,
                    (procs, pg, redis, proxy, args))
        run["failures"] = failure_reasons(engine, batch_id)  # before training: the database goes with the run
        trained = None if args.no_train else _safe_train(engine, procs, batch_id)
        leaks = secret_leaks(key, [str(PG_BIN / "pg_dump"), "-h", "127.0.0.1", "-p", str(args.pg_port),
                                   "-U", "postgres", "postgres"], root)
        print_report(args.records, t0, run, proxy.report(), trained, leaks, root)
    finally:
        procs.stop_all()
        redis.stop()
        pg.stop()
        shutil.rmtree(pg.data, ignore_errors=True)  # the logs stay for reading


def _safe_train(engine, procs: Processes, batch_id: int) -> dict:  # type: ignore[no-untyped-def,type-arg]
    try:
        return train_phase(engine, procs, batch_id)
    except Exception as exc:  # noqa: BLE001 - reported (and failing the verdict), the batch figures still print
        print(f"  training phase failed: {type(exc).__name__}: {exc}", flush=True)
        return dict(training(engine, batch_id), killed_at_step=None, recovered_in_s=None, phase_error=str(exc))


def _safe(fn):  # type: ignore[no-untyped-def]
    try:
        return fn()
    except Exception:  # noqa: BLE001 - PostgreSQL may be restarting
        return None


def _up(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5):
            return True
    except OSError:
        return False


def print_report(n: int, t0: float, run: dict, paid: dict, trained: dict | None, leaks: dict, root: Path) -> None:  # type: ignore[type-arg]
    final, dl = run["final"], run["at_deadline"]
    per_record = paid["requests"] / max(n, 1)
    stuck = dl["without_draft"]
    rows = [("records", n), ("fault-free time T0 (s)", f"{t0:.1f}"), ("chaos wall time (s)", f"{run['elapsed']:.1f}"),
            ("records with a good draft", final["good"]), ("records failed with a reason", final["failed_with_reason"]),
            ("records lost (no draft at the end)", final["without_draft"]),
            (f"records stuck at the deadline ({dl['at_s']} s)", dl["without_draft"]),
            ("batch ended by the deadline", "yes" if dl["batch_ended"] else "no"),
            ("requests (at the server)", paid["requests"]), ("requests per record", f"{per_record:.3f}"),
            ("paid duplicates", paid["paid_duplicates"]),
            ("  explained by injected faults", f"{paid['explained_by_injected_faults']} ({paid['explained_by_events']} "
                                                f"by a kill/restart in between, {paid['explained_by_slow_timeouts']} "
                                                "retries of answers the client had given up on in the slow window)"),
            ("  unexplained", paid["unexplained_paid_duplicates"]),
            ("API key found in", ", ".join(k for k, v in leaks.items() if v) or "nowhere")]
    if trained:
        rows += [("training: follow-up", f"{trained['followup']} {trained['followup_error'] or ''}".strip()),
                 ("training: builds / runs for the batch", f"{trained['builds']} / {trained['runs']}"),
                 ("training: run", f"{trained['run_status']}, killed at step {trained['killed_at_step']}, "
                                   f"last step {trained['last_step']}, recovered in {trained['recovered_in_s']} s")]
    width = max(len(str(r[0])) for r in rows)
    print("\n".join(f"{name:<{width}}  {value}" for name, value in rows))
    for reason, records in run["failures"]:
        print(f"  failed: {records:5d} x {reason}")
    for line in paid["unexplained"][:20]:
        print(f"  unexplained paid duplicate: {line}")
    ok = (final["without_draft"] == 0 and stuck == 0 and dl["batch_ended"] and per_record <= 1.35
          and paid["unexplained_paid_duplicates"] == 0 and not any(leaks.values())
          and (trained is None or (trained["run_status"] == "completed" and trained["runs"] == 1
                                   and trained["builds"] == 1)))
    print(f"\nverdict: {'PASS' if ok else 'FAIL'} (logs in {root})")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

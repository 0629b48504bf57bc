"""Queue commands: worker, sweep, status, workers, resume, cancel, retry-failed."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, Optional

import typer
from rich.live import Live

from cli.context import check_broker, console, fail, print_json, settings_from, wiring
from cli.generate import check_outcome
from cli.live import follow, launch, report, run_with_bar, status_table
from cli.tables import Col, listing
from reasongen.bootstrap import Wiring
from reasongen.errors import ExitCode
from workers import batches, monitor, provider_resume, provider_status, sweeper
from workers.planning import Planned, plan_batch, retry_request

JSON_HELP = "Print JSON."


def worker(
    ctx: typer.Context,
    queues: str = typer.Option("teacher", "--queues", "-Q", help="Comma separated: teacher, gpu, train."),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", "-c", min=1,
                                              help="Chunks at once (teacher: threads, default: enough to keep the "
                                                   "teacher's concurrency full; gpu/train: 1)."),
    hostname: Optional[str] = typer.Option(None, "--hostname", "-n", help="Worker name (default QUEUES-PID@host)."),
    loglevel: str = typer.Option("INFO", "--loglevel", "-l", help="Celery log level."),
) -> None:
    """Start a Celery worker with the right pool for its queues; it sends events (Flower) and heartbeats."""
    from workers.app import pool_for, queue_name, worker_app

    settings = settings_from(ctx)
    kinds = [q.strip() for q in queues.split(",") if q.strip()]
    try:
        pool, n = pool_for(kinds, concurrency, settings)
        app = worker_app(settings)
    except (ValueError, RuntimeError) as exc:
        fail(str(exc))
    with wiring(ctx):
        pass  # fail fast, with one clear line, when the database is unreachable or not migrated
    check_broker(settings)  # likewise when Redis is down (Celery would retry for minutes)
    name = hostname or f"{'+'.join(kinds)}-{os.getpid()}@%h"
    app.worker_main(["worker", "-Q", ",".join(queue_name(settings, k) for k in kinds), "-P", pool, "-c", str(n),
                     "-n", name, "-l", loglevel, "-E", "--without-mingle", "--without-gossip"])


def sweep(
    ctx: typer.Context,
    forever: bool = typer.Option(False, "--forever", help="Keep sweeping every REASONGEN_SWEEP_INTERVAL seconds."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Re-send chunks whose lease expired or whose message the broker lost; fail chunks out of attempts."""
    with wiring(ctx) as wired:
        while True:
            try:
                found = sweeper.sweep(wired).as_dict()
            except Exception as exc:  # noqa: BLE001 - --forever outlives a database restart
                from workers.chunks import is_db_outage

                if not (forever and is_db_outage(exc)):
                    raise
                console.print(f"database unavailable ({type(exc).__name__}); sweeping again shortly")
                time.sleep(wired.settings.sweep_interval_s)
                continue
            print_json(found) if as_json else console.print(
                f"requeued {len(found['requeued'])}, re-sent {len(found['resent'])}, failed {len(found['failed'])}")
            if not forever:
                return
            time.sleep(wired.settings.sweep_interval_s)


def status(
    ctx: typer.Context,
    batch: Optional[int] = typer.Argument(None, help="Batch id; default: the most recent batches."),
    watch: bool = typer.Option(False, "--watch", help="Refresh until the batch ends (Ctrl-C to stop)."),
    limit: int = typer.Option(10, "--limit", min=1, help="How many recent batches without BATCH."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Per batch: records done / failed / pending, chunks by state, records/min, tokens, cost, ETA, errors."""
    with wiring(ctx) as wired:
        def current() -> list[dict[str, Any]]:
            return [monitor.batch_summary(wired, batch)] if batch else monitor.recent_summaries(wired, limit)

        if as_json:
            rows = with_unserved(wired, current())
            print_json(rows[0] if batch else rows)
        elif watch:
            _watch(current)
        else:
            rows = with_unserved(wired, current())
            console.print(status_table(rows))
            for line in filter(None, map(unserved_line, rows)):
                console.print(line, highlight=False)
            for line in filter(None, map(followup_line, rows)):
                console.print(line, highlight=False)
            for line in filter(None, map(rate_line, rows)):
                console.print(line, highlight=False)
            for line in (text for row in rows for text in provider_status.job_lines(row)):
                console.print(line, highlight=False)


def with_unserved(wired: Wiring, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each summary gains ``no_worker_on``: the queue its queued chunks wait on when no live worker consumes it."""
    unserved = monitor.unserved(wired, rows)
    return [{**row, "no_worker_on": unserved.get(row["batch"])} for row in rows]


def unserved_line(summary: dict[str, Any]) -> str | None:
    queue = summary.get("no_worker_on")
    if not queue:
        return None
    return (f"batch {summary['batch']}: {summary['chunks']['queued']} chunk(s) queued on '{queue}', but no live "
            f"worker consumes it; start one with: reasongen worker --queues {queue}")


def _throttle_cell(worker: dict[str, Any]) -> str:
    """The teacher's in-flight limit, and the pace its workers learned from 429s when there is one."""
    limit, rpm = worker.get("teacher_limit"), worker.get("teacher_learned_rpm")
    return (str(limit) if limit else "-") + (f" @{rpm:,}/min" if rpm else "")


def rate_line(summary: dict[str, Any]) -> str | None:
    """The teacher's learned request limit (no REASONGEN_TEACHER_RPM given), once a 429 taught one."""
    learned = summary.get("rate_limit")
    if not learned or not learned.get("learned_rpm"):
        return None
    return (f"batch {summary['batch']} teacher rate limit learned from 429s: {learned['learned_rpm']:,} requests/min "
            f"({learned['cuts']} cut(s); set REASONGEN_TEACHER_RPM to fix it)")


def followup_line(summary: dict[str, Any]) -> str | None:
    """One line per batch whose `--then` follow-up did not (yet) succeed, with what to do."""
    f = summary.get("followup")
    if not f or f["state"] in ("done", "not yet"):
        return None
    line = f"batch {summary['batch']} follow-up '{f['then']}': {f['state']}"
    if f["error"]:
        line += f": {f['error']}"
    if f["state"] in ("failed", "skipped"):
        line += f". Run it again with: reasongen retry-followup {summary['batch']}"
    return line


def _watch(current: Callable[[], list[dict[str, Any]]]) -> None:
    with Live(status_table(current()), console=console, refresh_per_second=2) as live:
        try:
            while True:
                rows = current()
                live.update(status_table(rows))
                if rows and all(r["finished"] for r in rows):
                    return
                time.sleep(1.0)
        except KeyboardInterrupt:
            return


def workers_cmd(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Live workers (queues, concurrency, current chunk, the teacher's current adaptive limit, records processed,
    last heartbeat) and queue depths."""
    with wiring(ctx) as wired:
        found = monitor.workers_report(wired)
    if as_json:
        print_json(found)
        return
    cols = [Col("worker", key=True), Col("queues"), Col("concurrency", drop=True, justify="right"),
            Col("pid", drop=True, justify="right"), Col("current chunk", key=True, justify="right"),
            Col("limit", drop=True, justify="right"), Col("records", key=True, justify="right"),
            Col("heartbeat", key=True)]
    cells = [[w["hostname"], ",".join(w["queues"]), str(w["concurrency"]), str(w["pid"]), str(w["current_chunk"] or "-"),
              _throttle_cell(w), str(w["records_processed"]), f"{w['last_heartbeat_s_ago']}s ago"]
             for w in found["workers"]]
    console.print(listing(cols, cells, console, noun="worker") if cells else "No live workers.")
    depths = found["queues"]
    console.print("queue depths: " + (", ".join(f"{k}={v}" for k, v in depths.items()) if depths else "no broker"))


def resume(
    ctx: typer.Context,
    batch: int = typer.Argument(..., help="Batch id."),
    max_cost: Optional[float] = typer.Option(None, "--max-cost", min=0, help="New spend limit (USD)."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help="New token limit."),
    wait: bool = typer.Option(False, "--wait", help="With a broker: follow the batch until it ends."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Re-send what a batch still needs (expired leases, lost messages); a batch stopped by its budget or
    cancelled runs again (raise the budget with --max-cost/--max-tokens). Without a broker, run it here.
    A batch run with --mode batch sends what was never answered as a new provider batch job; jobs still
    running at the provider are left to finish."""
    with wiring(ctx) as wired:
        batches.reopen(wired, batch, max_cost, max_tokens)
        if provider_resume.in_batch_mode(wired, batch):  # --mode batch: stays on the provider's batch API
            return _resume_jobs(wired, batch, wait, as_json)
        summary = monitor.batch_summary(wired, batch)
        if not wired.settings.broker_url:
            run_with_bar(wired, Planned(batch, summary["backend"], [], summary["total"], fresh=False), quiet=as_json)
            return report(wired, batch, as_json)
        found = sweeper.sweep(wired, batch_id=batch, force=True).as_dict()
        print_json(found) if as_json else console.print(
            f"batch {batch}: re-sent {len(found['resent'])} chunks, gave {len(found['requeued'])} expired leases "
            f"another try, failed {len(found['failed'])}")
        if wait:
            follow(wired, batch, quiet=as_json)
            report(wired, batch, as_json)


def _resume_jobs(wired: Any, batch: int, wait: bool, as_json: bool) -> None:
    from cli.batchmode import follow_jobs

    sent = provider_resume.resume(wired, batch)
    if not as_json:
        console.print(f"batch {batch}: {sent} request(s) never answered sent again as a provider batch job; jobs "
                      f"still running at the provider go on (nothing is sent twice)")
    if wait:
        follow_jobs(wired, batch)
    report(wired, batch, as_json, brief=not wait)


def cancel(
    ctx: typer.Context,
    batch: int = typer.Argument(..., help="Batch id."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Cancel a batch: queued chunks never start, running ones stop at the next sub-batch boundary; its provider
    batch jobs (--mode batch) are cancelled at the provider, keeping what they already answered."""
    with wiring(ctx) as wired:
        message = provider_resume.cancel_batch(wired, batch)  # its provider batch jobs too; answers kept
        print_json(monitor.batch_summary(wired, batch)) if as_json else console.print(message)


def retry_failed(
    ctx: typer.Context,
    batch: int = typer.Argument(..., help="Batch id whose failed records to re-run."),
    wait: bool = typer.Option(False, "--wait", help="With a broker: follow the new batch until it ends."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Re-run the failed records of a batch (failed drafts, and records of chunks that failed) as a new batch;
    for a judge batch, the drafts whose judgement failed. A batch run with --mode batch retries as a provider
    batch job (only the failed ones: nothing answered is paid for twice)."""
    from cli.batchmode import launch_batch

    with wiring(ctx) as wired:
        planned = _plan_retry(wired, batch)
        if planned is None:
            print_json({"batch": None, "failed": 0}) if as_json else console.print(f"batch {batch}: no failed records")
            return
        if provider_resume.in_batch_mode(wired, batch):  # --mode batch: the retry is a provider job too
            launch_batch(wired, planned, wait=wait, as_json=as_json)
        else:
            launch(wired, planned, wait=wait, as_json=as_json)
        check_outcome(wired, planned.batch_id)


def _plan_retry(wired: Any, batch: int) -> Planned | None:
    """A new batch over the failed items: records without a good draft, or (a judge batch) drafts whose
    judgement failed."""
    from judging.plan import plan_judge_batch, retry_judge_request

    with wired.uow() as uow:
        judging = uow.batches.get(batch).kind == "judge"
    if judging:
        judge_req = retry_judge_request(wired, batch)
        return None if judge_req is None else plan_judge_batch(wired, judge_req)
    req = retry_request(wired, batch)
    return None if req is None else plan_batch(wired, req)


def retry_followup(
    ctx: typer.Context,
    batch: int = typer.Argument(..., help="Batch id whose --then follow-up failed or was skipped."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Run a batch's failed (or skipped) --then follow-up again: queued for a train worker with a broker,
    here without one. Exit code 0 when it was handed out (or, here, succeeded)."""
    from workers import dispatch
    from workers.batches import utcnow

    with wiring(ctx) as wired:
        with wired.uow() as uow:
            why_not = uow.followups.reopen(batch, utcnow())
            then = uow.batches.get(batch).then
            uow.commit()
        if why_not:
            fail(f"batch {batch}: cannot retry its follow-up: {why_not}")
        if wired.settings.broker_url:
            dispatch.hand_out_followup(wired, batch, str(then))
            message = f"batch {batch}: follow-up '{then}' queued for a train worker; see: reasongen status {batch}"
        else:
            dispatch.run_followup_here(wired, batch, str(then))
            message = f"batch {batch}: follow-up '{then}' ran here"
        summary = monitor.batch_summary(wired, batch)
        if as_json:
            print_json(summary["followup"])
        else:
            console.print(followup_line(summary) or message, highlight=False)
        if summary["followup"]["state"] == "failed":
            raise typer.Exit(int(ExitCode.SOME_FAILED))


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
    app.command("sweep")(sweep)
    app.command("status")(status)
    app.command("workers")(workers_cmd)
    app.command("resume")(resume)
    app.command("cancel")(cancel)
    app.command("retry-failed")(retry_failed)
    app.command("retry-followup")(retry_followup)

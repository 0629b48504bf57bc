"""Live displays shared by `generate`, `rebuild`, `retry-failed` and `status --watch`."""

from __future__ import annotations

import time
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.console import Group, RenderableType
from rich.text import Text

from cli.context import console, print_json
from cli.tables import Col, listing
from reasongen.errors import ServiceUnavailable
from reasongen.bootstrap import Wiring
from workers import dispatch, monitor
from workers.app import queue_for_backend
from workers.inprocess import Totals, run_here
from workers.planning import Planned


NO_WORKER_AFTER_S = 3.0  # a worker that was just started needs a moment for its first heartbeat


class RateColumn(ProgressColumn):
    def render(self, task: Any) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.1f} rec/s" if speed else "- rec/s", style="cyan")


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("[green]{task.fields[done]} done[/] [red]{task.fields[failed]} failed[/]"), RateColumn(),
        TextColumn("{task.fields[tokens]:,} tok ${task.fields[cost]:.4f}"), TimeRemainingColumn(),
        console=console, transient=False,
    )


def launch(wired: Wiring, planned: Planned, *, wait: bool, as_json: bool) -> None:
    """Queue the batch (broker) or run it here; then report."""
    s = wired.settings
    if s.broker_url:
        send_or_explain(wired, planned)
        if not as_json:
            console.print(f"batch [bold]{planned.batch_id}[/]: {planned.total_records} records in "
                          f"{len(planned.chunk_ids)} chunks queued on '{queue_for_backend(s, planned.backend)}'. "
                          f"Follow it with: reasongen status {planned.batch_id} --watch")
        if wait:
            follow(wired, planned.batch_id, quiet=as_json)
    else:
        run_with_bar(wired, planned, quiet=as_json)
    report(wired, planned.batch_id, as_json, brief=not (wait or not s.broker_url))


def send_or_explain(wired: Wiring, planned: Planned) -> None:
    from kombu.exceptions import OperationalError

    try:
        dispatch.send_chunks(wired.settings, planned.chunk_ids, planned.backend)
    except OperationalError as exc:
        reason = str(exc).rstrip(".")
        raise ServiceUnavailable(f"cannot reach the broker (REASONGEN_BROKER_URL): {reason}. Batch {planned.batch_id} "
                           f"is saved; when the broker is back run: reasongen resume {planned.batch_id}") from exc


def run_with_bar(wired: Wiring, planned: Planned, *, quiet: bool) -> None:
    if planned.backend == "local":  # transformers in this process: its warnings and bars are not ours to show
        from training.launch import quiet_libraries

        quiet_libraries()
    if quiet:
        run_here(wired, planned.batch_id, fresh=planned.fresh)
        return
    with progress_bar() as bar:
        task = bar.add_task(f"batch {planned.batch_id}", total=planned.total_records, done=0, failed=0, tokens=0,
                            cost=0.0)

        def show(t: Totals) -> None:
            bar.update(task, completed=t.done + t.failed, done=t.done, failed=t.failed, tokens=t.tokens,
                       cost=t.cost_usd)

        run_here(wired, planned.batch_id, on_progress=show, fresh=planned.fresh)


def follow(wired: Wiring, batch_id: int, *, quiet: bool, interval: float = 1.0) -> None:
    """Poll the database until the batch ends, with a live bar."""
    summary = monitor.batch_summary(wired, batch_id)
    with progress_bar() as bar:
        bar.disable = quiet
        task = bar.add_task(f"batch {batch_id}", total=summary["total"], done=0, failed=0, tokens=0, cost=0.0)
        warned, checked = False, time.monotonic()
        while True:
            summary = monitor.batch_summary(wired, batch_id)
            bar.update(task, completed=summary["done"] + summary["failed"], done=summary["done"],
                       failed=summary["failed"], tokens=summary["tokens"], cost=summary["cost_usd"])
            if summary["finished"]:
                return
            if not warned and not quiet and time.monotonic() - checked >= NO_WORKER_AFTER_S:
                warned, checked = _warn_if_unserved(wired, summary), time.monotonic()
            time.sleep(interval)


def _warn_if_unserved(wired: Wiring, summary: dict[str, Any]) -> bool:
    """Once, while following: chunks wait on a queue that no live worker consumes (it would wait for ever)."""
    queue = monitor.unserved(wired, [summary]).get(summary["batch"])
    if queue:
        console.print(f"[yellow]warning:[/] no live worker consumes queue '{queue}'; start one with: "
                      f"reasongen worker --queues {queue} (still waiting; Ctrl-C stops waiting, the batch is kept)")
    return bool(queue)


def report(wired: Wiring, batch_id: int, as_json: bool, brief: bool = False) -> None:
    summary = {**monitor.batch_summary(wired, batch_id), **reuse(wired, batch_id)}
    if as_json:
        print_json(summary)
    elif not brief:
        console.print(status_line(summary))
        reused = summary.get("already_drafted", summary.get("already_judged", 0))
        if summary["finished"] and reused:
            verb = "drafted" if "already_drafted" in summary else "judged"
            console.print(f"{reused} already {verb}, {summary['sent']} sent", highlight=False)
    if summary["status"] == "paused":  # the teacher's circuit breaker: the reason names the server's error
        raise ServiceUnavailable(f"batch {batch_id} paused: {summary['reason']}")


def reuse(wired: Wiring, batch_id: int) -> dict[str, int]:
    """Of the batch's finished records, how many already had a draft (a judge batch: a judgement) under the same
    key, so nothing was sent, and how many requests it sent (rows it wrote, less drafts copied from an identical
    record's)."""
    with wired.uow() as uow:
        done, failed = uow.chunks.record_counts(batch_id)
        if uow.batches.get(batch_id).kind == "judge":
            judged = uow.judgements.count_for_batch(batch_id)
            return {"already_judged": max(done + failed - judged, 0), "sent": judged}
        written = uow.batch_stats.draft_totals(batch_id)["drafts"]
        shared = uow.batch_stats.shared(batch_id)
    return {"already_drafted": max(done + failed - written, 0), "sent": max(written - shared, 0)}


def status_line(s: dict[str, Any]) -> str:
    reason = f" ({s['reason']})" if s["reason"] else ""
    return (f"batch {s['batch']} [bold]{s['status']}[/]{reason}: {s['done']} done, {s['failed']} failed, "
            f"{s['pending']} pending of {s['total']}; {s['tokens']:,} tokens, ${s['cost_usd']:.4f}"
            + (f"; {s['shared']} shared an identical record's draft" if s.get("shared") else "")
            + (f"; waiting for review: {s['waiting_for_review']} (decide them, or: reasongen release {s['batch']})"
               if s.get("waiting_for_review") else "")
            + teacher_line(s.get("teacher")))


def teacher_line(teacher: dict[str, Any] | None) -> str:
    """The endpoint as the batch saw it: the structured-output mode it really ran in, the adaptive limit."""
    if not teacher:
        return ""
    limit = teacher.get("concurrency_limit")
    return (f"; teacher mode {teacher['response_mode']}"
            + (f", concurrency limit {limit} ({teacher.get('concurrency_reason')})" if limit else ""))


# At 80 columns the kind, chunk states, rate and tokens go first; batch ids and counts are never cut.
STATUS_COLUMNS = [Col("batch", key=True, justify="right"), Col("kind", drop=True), Col("status", min_width=12),
                  Col("done", key=True, justify="right"), Col("failed", key=True, justify="right"),
                  Col("pending", key=True, justify="right"), Col("chunks", drop=True),
                  Col("rec/min", drop=True, justify="right"), Col("tokens", drop=True, justify="right"),
                  Col("cost", key=True, justify="right"), Col("ETA", key=True, justify="right")]


def status_table(summaries: list[dict[str, Any]]) -> RenderableType:
    """The batches as a table (vertical blocks on a narrow terminal); each batch's commonest error below it,
    whole, on its own line."""
    rows, errors = [], []
    for s in summaries:
        chunks = " ".join(f"{k}:{v}" for k, v in sorted(s["chunks"].items()))
        eta = "-" if s["eta_s"] is None else f"{s['eta_s']:.0f}s"
        status = s["status"] + (f": {s['reason']}" if s["reason"] else "")
        status += f"; waiting for review: {s['waiting_for_review']}" if s.get("waiting_for_review") else ""
        rows.append([str(s["batch"]), s["kind"], status, str(s["done"]), str(s["failed"]), str(s["pending"]), chunks,
                     f"{s['records_per_min']:.0f}", f"{s['tokens']:,}", f"${s['cost_usd']:.4f}", eta])
        if s["errors"]:
            top = s["errors"][0]
            errors.append(Text(f"batch {s['batch']} top error (x{top['count']}): {top['error']}", style="red"))
    return Group(listing(STATUS_COLUMNS, rows, console, noun="batch"), *errors)

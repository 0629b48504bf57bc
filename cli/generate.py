"""`reasongen generate` and `reasongen rebuild`: make a batch, then queue it or run it here."""

from __future__ import annotations

from typing import Any, Optional

import typer

from cli.batchmode import ACCEPT_LATENCY, MODE, check_mode, cost_line, decide, launch_batch, with_batch_cost
from cli.context import console, print_json, wiring
from cli.live import launch
from cli.tables import Col, listing
from reasongen.bootstrap import Wiring
from workers.planning import BatchRequest, plan_batch
from workers.rebuild import Stale, estimate, find_stale, rebuild_request

BACKEND_HELP = "teacher (OpenAI-compatible server), local (transformers, e.g. Phi-2) or fake (offline demo)."
WHERE_HELP = "Filters, comma separated: lang=ja,field=math (keys: lang, field, uniqueness, key)."

# Options that generate and rebuild share (Typer reads each default as the option's definition).
DATASET = typer.Option(..., "--dataset", "-d", help="Dataset name (as ingested).")
BACKEND = typer.Option("teacher", "--backend", "-b", help=BACKEND_HELP)
MODEL = typer.Option(None, "--model", "-m", help="Model; default from settings.")
TEMPLATE = typer.Option("reason", "--template", "-t",
                        help="Prompt template name (`reasongen templates list`).")
WHERE = typer.Option(None, "--where", "-w", help=WHERE_HELP)
CHUNK_SIZE = typer.Option(None, "--chunk-size", min=1, help="Records per chunk (one task each).")
MAX_COST = typer.Option(None, "--max-cost", min=0, help="Stop the batch at this spend (USD).")
MAX_TOKENS = typer.Option(None, "--max-tokens", min=1, help="Stop the batch at this many tokens.")
WAIT = typer.Option(False, "--wait", help="With a broker: follow the batch live until it ends.")
THEN = typer.Option(None, "--then", help="When the batch completes: build or train (once). With --judge/--policy it "
                    "waits until none of the batch's drafts is pending (or `reasongen release BATCH`).")
JUDGE = typer.Option(None, "--judge", help="Judge each draft right after it is written, in the same chunk: teacher, "
                     "local or fake.")
JUDGE_MODEL = typer.Option(None, "--judge-model", help="Judge model (default from settings).")
RUBRIC = typer.Option("default", "--rubric", help="Judge rubric name.")
POLICY = typer.Option(None, "--policy", help="Decide judged drafts with this policy (reasongen policy set ...).")


def generate(
    ctx: typer.Context,
    dataset: str = DATASET,
    backend: str = BACKEND,
    model: Optional[str] = MODEL,
    template: str = TEMPLATE,
    where: Optional[str] = WHERE,
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="At most N records (in id order)."),
    chunk_size: Optional[int] = CHUNK_SIZE,
    sub_batch_size: Optional[int] = typer.Option(None, "--sub-batch-size", min=1,
                                                 help="Records per commit inside a chunk (default: the backend's)."),
    max_cost: Optional[float] = MAX_COST,
    max_tokens: Optional[int] = MAX_TOKENS,
    then: Optional[str] = THEN,
    judge: Optional[str] = JUDGE,
    judge_model: Optional[str] = JUDGE_MODEL,
    rubric: str = RUBRIC,
    policy: Optional[str] = POLICY,
    wait: bool = WAIT,
    mode: str = MODE,
    accept_latency: bool = ACCEPT_LATENCY,
    as_json: bool = typer.Option(False, "--json", help="Print the batch summary as JSON."),
) -> None:
    """Generate reasoning drafts: in-process with a progress bar, or on Celery workers when a broker is set."""
    from judging.plan import judge_params

    req = BatchRequest(dataset=dataset, backend=backend, model=model, template=template, where=where, limit=limit,
                       chunk_size=chunk_size, sub_batch_size=sub_batch_size, max_cost=max_cost, max_tokens=max_tokens,
                       then=then)
    with wiring(ctx) as wired:
        req.extra_params = judge_params(wired, judge, judge_model, rubric, policy)
        budget = max_cost is not None or max_tokens is not None
        check_mode(mode, backend, judged=bool(req.extra_params), budget=budget)
        planned = plan_batch(wired, req)
        if decide(wired, mode, planned.backend, planned.total_records, accept_latency, as_json,
                  judged=bool(req.extra_params), budget=budget):
            launch_batch(wired, planned, wait=wait, as_json=as_json)
        else:
            launch(wired, planned, wait=wait, as_json=as_json)
        check_outcome(wired, planned.batch_id)


def say_held_back(wired: Wiring, held: int) -> None:
    if held:
        console.print(f"{held} rejected record(s) left for people: regenerating would repeat a rejected request, or "
                      f"they were rejected {wired.settings.max_regenerations} times (REASONGEN_MAX_REGENERATIONS); "
                      "see: reasongen review list --status rejected", highlight=False)


def check_outcome(wired: Wiring, batch_id: int) -> None:
    """Exit 1 (reasongen.errors.ExitCode.SOME_FAILED) when a batch that ended here has records without a good
    draft, the last line saying how many and the commonest error; 0 only when every record has one. A batch
    only queued (broker, no --wait) has not ended: 0."""
    from reasongen.errors import SomeFailed
    from workers import monitor

    s = monitor.batch_summary(wired, batch_id)
    if not s["finished"] or (s["status"] == "done" and not s["failed"] and not s["pending"]):
        return
    top = s["errors"][0] if s["errors"] else None
    commonest = f"; commonest error: {top['error'][:200]} (x{top['count']})" if top else ""
    how = (f"re-run them with: reasongen retry-failed {batch_id}" if s["status"] in ("done", "failed")
           else f"go on with: reasongen resume {batch_id}")
    raise SomeFailed(f"batch {batch_id} {s['status']}: {s['failed']} of {s['total']} records failed, "
                     f"{s['pending']} not drafted{commonest}; {how}")


def rebuild(
    ctx: typer.Context,
    dataset: str = DATASET,
    backend: str = BACKEND,
    model: Optional[str] = MODEL,
    template: str = TEMPLATE,
    where: Optional[str] = WHERE,
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="At most N stale records this time."),
    chunk_size: Optional[int] = CHUNK_SIZE,
    max_cost: Optional[float] = MAX_COST,
    max_tokens: Optional[int] = MAX_TOKENS,
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be regenerated, with estimates "
                                 "(cost online and in batch mode)."),
    then: Optional[str] = THEN,
    judge: Optional[str] = JUDGE,
    judge_model: Optional[str] = JUDGE_MODEL,
    rubric: str = RUBRIC,
    policy: Optional[str] = POLICY,
    wait: bool = WAIT,
    mode: str = MODE,
    accept_latency: bool = ACCEPT_LATENCY,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Regenerate stale records only: no draft yet, record or template changed, or rejected with a note. With
    --judge/--policy/--then it runs unattended like generate: judged, decided, then built or trained once."""
    from judging.plan import judge_params

    req = BatchRequest(dataset=dataset, backend=backend, model=model, template=template, where=where, limit=limit,
                       chunk_size=chunk_size, max_cost=max_cost, max_tokens=max_tokens, then=then)
    with wiring(ctx) as wired:
        req.extra_params = judge_params(wired, judge, judge_model, rubric, policy)
        held: list[int] = []
        stale = find_stale(wired, req, held)
        backend_model = plan_model(wired, req)
        if not as_json:
            say_held_back(wired, len(held))
        if dry_run:
            totals = with_batch_cost(wired, backend_model, estimate(wired, backend_model, stale))
            show_dry_run(stale, {**totals, "held_back": len(held)}, as_json)
            if not as_json:
                console.print(cost_line(totals), highlight=False)
        elif not stale:
            print_json({"batch": None, "stale": 0, "held_back": len(held)}) if as_json else console.print(
                "Nothing is stale.")
        else:
            budget = max_cost is not None or max_tokens is not None
            check_mode(mode, backend, judged=bool(req.extra_params), budget=budget)
            planned = plan_batch(wired, rebuild_request(req, stale))
            if decide(wired, mode, planned.backend, planned.total_records, accept_latency, as_json,
                      judged=bool(req.extra_params), budget=budget):
                launch_batch(wired, planned, wait=wait, as_json=as_json)
            else:
                launch(wired, planned, wait=wait, as_json=as_json)
            check_outcome(wired, planned.batch_id)


def plan_model(wired: Wiring, req: BatchRequest) -> str:
    from workers.planning import resolve

    model: str = resolve(wired, req)[0].model  # resolve gives the backend untyped (any of several classes)
    return model


def show_dry_run(stale: list[Stale], totals: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json({"estimate": totals, "records": [s.__dict__ for s in stale]})
        return
    cols = [Col("record", key=True, justify="right"), Col("key", key=True), Col("lang", key=True), Col("why"),
            Col("est. prompt tokens", justify="right", drop=True)]
    cells = [[str(s.record_id), s.key, s.lang, s.reason, str(s.prompt_tokens)] for s in stale[:50]]
    console.print(listing(cols, cells, console, noun="record"))
    if len(stale) > 50:
        console.print(f"... and {len(stale) - 50} more")
    priced = "" if totals["priced"] else " (no price for this model: cost shown as 0)"
    console.print(f"{totals['records']} records would be regenerated: ~{totals['prompt_tokens']:,} prompt + "
                  f"~{totals['completion_tokens']:,} completion tokens, ~${totals['cost_usd']:.4f}{priced}")


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)
    app.command("rebuild")(rebuild)

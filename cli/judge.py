"""`reasongen judge` (score existing drafts) and `reasongen release` (fire a follow-up held for review)."""

from __future__ import annotations

from typing import Optional

import typer

from cli.batchmode import ACCEPT_LATENCY, MODE, check_mode, decide, launch_batch
from cli.context import console, print_json, wiring
from cli.live import launch

JUDGE_HELP = "Judge backend: teacher (OpenAI-compatible server), local (transformers) or fake (simple checks)."
RUBRIC_HELP = "Rubric name (judging/rubrics/, or <templates dir>/rubrics/NAME.jinja)."


def judge(
    ctx: typer.Context,
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset name (as ingested)."),
    backend: str = typer.Option("teacher", "--backend", "-b", help=JUDGE_HELP),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Judge model; default from settings."),
    rubric: str = typer.Option("default", "--rubric", "-r", help=RUBRIC_HELP),
    where: Optional[str] = typer.Option(None, "--where", "-w",
                                        help='Which drafts, e.g. "status=pending,lang=ja" (review filter keys).'),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="At most N drafts (in id order)."),
    policy: Optional[str] = typer.Option(None, "--policy", help="Apply this policy as drafts are judged."),
    chunk_size: Optional[int] = typer.Option(None, "--chunk-size", min=1, help="Drafts per chunk (one task each)."),
    max_cost: Optional[float] = typer.Option(None, "--max-cost", min=0, help="Stop the batch at this spend (USD)."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help="Stop at this many tokens."),
    wait: bool = typer.Option(False, "--wait", help="With a broker: follow the batch live until it ends."),
    mode: str = MODE,
    accept_latency: bool = ACCEPT_LATENCY,
    as_json: bool = typer.Option(False, "--json", help="Print the batch summary as JSON."),
) -> None:
    """Score existing drafts with a judge model and a rubric (1-5 and a reason per criterion), as a batch on the
    same queue as generation: chunks, leases, budgets, retries, `status`. A draft already judged by the same judge
    and rubric is not judged again. With --mode batch the same requests go to the provider's batch API at half
    price (results within 24 h)."""
    from judging.plan import JudgeRequest, plan_judge_batch

    req = JudgeRequest(dataset=dataset, backend=backend, model=model, rubric=rubric, where=where, limit=limit,
                       policy=policy, chunk_size=chunk_size, max_cost=max_cost, max_tokens=max_tokens)
    with wiring(ctx) as wired:
        budget = max_cost is not None or max_tokens is not None
        check_mode(mode, backend, budget=budget)
        planned = plan_judge_batch(wired, req)
        if decide(wired, mode, planned.backend, planned.total_records, accept_latency, as_json, budget=budget):
            launch_batch(wired, planned, wait=wait, as_json=as_json, noun="drafts")
        else:
            launch(wired, planned, wait=wait, as_json=as_json)


def release(
    ctx: typer.Context,
    batch: int = typer.Argument(..., help="Batch id whose follow-up waits for review."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Fire a batch's held follow-up (--then build|train) now, from what is approved now; drafts still
    pending are left out of the build. It fires once: a second release does nothing."""
    from judging import gate

    with wiring(ctx) as wired:
        with wired.uow() as uow:
            waiting = gate.waiting_for_review(uow, uow.batches.get(batch))
        fired = gate.release(wired, batch, force=True)
    if as_json:
        print_json({"batch": batch, "released": bool(fired), "then": fired[1] if fired else None,
                    "left_pending": waiting})
    elif fired:
        console.print(f"batch {batch}: follow-up '{fired[1]}' released"
                      + (f" ({waiting} draft(s) still pending are not in it)" if waiting else ""))
    else:
        console.print(f"batch {batch}: its follow-up was already handed out; nothing to release")


def register(app: typer.Typer) -> None:
    app.command("judge")(judge)
    app.command("release")(release)

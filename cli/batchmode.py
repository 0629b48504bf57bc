"""`generate/rebuild --mode batch|auto`: send the batch as provider batch jobs, follow them, price them."""

from __future__ import annotations

import time
from typing import Any

import typer

from cli.context import console
from reasongen.bootstrap import Wiring
from workers.planning import Planned

MODE = typer.Option("online", "--mode", help="online (requests now), batch (provider batch jobs: half price, results "
                    "within 24 h; teacher only) or auto (batch from REASONGEN_BATCH_AUTO_THRESHOLD records when "
                    "--accept-latency is given, else online).")
ACCEPT_LATENCY = typer.Option(False, "--accept-latency", help="With --mode auto: results may take up to 24 h.")


def check_mode(mode: str, backend: str, judged: bool = False, budget: bool = False) -> None:
    """Refuse a mode that cannot work before any batch is planned."""
    from workers.provider_status import choose_mode

    if mode == "batch" and budget:  # a provider job is priced and run whole: nothing could stop it at the limit
        raise ValueError("--max-cost/--max-tokens hold online only: a provider batch job runs whole once submitted. "
                         "See its cost first with: reasongen rebuild -d DATASET --dry-run (online and batch side by "
                         "side), then size the run with --limit; or keep the budget and use --mode online")
    if mode == "batch" and judged:
        raise ValueError("--mode batch drafts without judging in the same run: drop --judge/--policy, then judge "
                         "the drafts with: reasongen judge -d DATASET --mode batch [--policy NAME]")
    if mode != "auto":  # auto never refuses: it falls back to online
        choose_mode(None, mode, backend, 0, False)


def decide(wired: Wiring, mode: str, backend: str, records: int, accept_latency: bool, as_json: bool,
           judged: bool = False, budget: bool = False) -> bool:
    """True for batch mode; says which mode and why unless printing JSON. A batch that judges in the same
    chunk (generate --judge), or that has a budget to hold, runs online."""
    from workers.provider_status import choose_mode

    chosen, why = choose_mode(wired.settings, mode, backend, records, accept_latency)
    if judged and chosen == "batch":
        chosen, why = "online", "--judge judges each draft in the same chunk, online"
    if budget and chosen == "batch":
        chosen, why = "online", "--max-cost/--max-tokens hold online only"
    if mode != "online" and not as_json:
        console.print(f"mode: {chosen} ({why})", highlight=False)
    return chosen == "batch"


def launch_batch(wired: Wiring, planned: Planned, *, wait: bool, as_json: bool, noun: str = "records") -> None:
    """Store and submit the provider jobs; with --wait, poll here until every result is in."""
    from cli.live import report
    from workers import provider_jobs

    jobs = provider_jobs.start(wired, planned.batch_id)
    if not as_json:
        console.print(f"batch [bold]{planned.batch_id}[/]: {planned.total_records} {noun} in {len(jobs)} provider "
                      f"batch job(s). Workers' sweepers poll them (or: reasongen sweep); follow with: "
                      f"reasongen status {planned.batch_id}")
    if wait:
        follow_jobs(wired, planned.batch_id)
    report(wired, planned.batch_id, as_json, brief=not wait)


def follow_jobs(wired: Wiring, batch_id: int) -> None:
    from workers import provider_jobs

    while True:
        provider_jobs.poll(wired, batch_id=batch_id)
        with wired.uow() as uow:
            if uow.batches.get(batch_id).finished_at is not None:
                return
        time.sleep(min(wired.settings.batch_poll_min_s, 5.0))


def with_batch_cost(wired: Wiring, model: str, totals: dict[str, Any]) -> dict[str, Any]:
    """The dry-run estimate with the online and the batch price side by side."""
    from generation.provider_batch.prices import side_by_side

    return {**totals, **side_by_side(wired.settings, model, totals["prompt_tokens"], totals["completion_tokens"])}


def cost_line(totals: dict[str, Any]) -> str:
    return (f"cost online ~${totals['online_usd']:.4f} | batch mode ~${totals['batch_usd']:.4f} "
            f"(saves ~${totals['saved_usd']:.4f}; results within 24 h)")


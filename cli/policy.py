"""`reasongen policy set|list|show` and the review commands built on policies and judgements:
`review apply-policy`, `review agreement`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.table import Table

from cli.context import console, print_json, wiring

if TYPE_CHECKING:
    from review.policy import PolicySpec

policy_app = typer.Typer(help="Approval policies: judge scores and check flags -> approve / reject / leave for people.",
                         no_args_is_help=True)


@policy_app.command("set")
def set_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Policy name."),
    approve_min: float = typer.Option(..., "--approve-min", min=1, max=5,
                                      help="Approve when the overall score is at least this."),
    reject_max: float = typer.Option(..., "--reject-max", min=1, max=5,
                                     help="Reject when any criterion scores at most this (reasons become the note)."),
    require_no_flags: bool = typer.Option(False, "--require-no-flags",
                                          help="Approve only drafts no automatic check flagged."),
    rubric: Optional[str] = typer.Option(None, "--rubric", help="Count only judgements under this rubric."),
) -> None:
    """Create or change a policy. Changing it changes its hash, so later decisions name the new thresholds."""
    from review.policy import PolicySpec, save_policy

    with wiring(ctx) as wired, wired.uow() as uow:
        spec = PolicySpec(name, approve_min, reject_max, require_no_flags, rubric)
        save_policy(uow, spec)
        uow.commit()
    console.print(f"policy [bold]{name}[/] ({spec.reviewer}): {spec.describe()}")


@policy_app.command("list")
def list_cmd(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every policy with its thresholds."""
    from review.policy import PolicySpec

    with wiring(ctx) as wired, wired.uow() as uow:
        specs = [PolicySpec.of(p) for p in uow.policies.all()]
    if as_json:
        print_json([_dict(s) for s in specs])
        return
    table = Table("name", "approve if overall >=", "reject if any <=", "no flags", "audit name")
    for s in specs:
        table.add_row(s.name, f"{s.approve_min:g}", f"{s.reject_max:g}", "yes" if s.require_no_flags else "no",
                      s.reviewer)
    console.print(table if specs else "No policies yet: reasongen policy set NAME --approve-min 4 --reject-max 2")


@policy_app.command("show")
def show_cmd(ctx: typer.Context, name: str = typer.Argument(...),
             as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """One policy: thresholds, audit name, and how many drafts it decided."""
    from review.agreement import decided_by_policy
    from review.policy import load_policy

    with wiring(ctx) as wired, wired.uow() as uow:
        spec = load_policy(uow, name)
        counts = decided_by_policy(uow, name)
    if as_json:
        print_json({**_dict(spec), "decided": counts})
        return
    console.print(f"policy [bold]{name}[/] ({spec.reviewer})\n{spec.describe()}\n"
                  f"decided so far: {counts.get('approve', 0)} approved, {counts.get('reject', 0)} rejected")


def _dict(spec: PolicySpec) -> dict[str, Any]:
    return {"name": spec.name, "approve_min": spec.approve_min, "reject_max": spec.reject_max,
            "require_no_flags": spec.require_no_flags, "rubric": spec.rubric_name, "hash": spec.hash,
            "reviewer": spec.reviewer}


def apply_policy_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Policy name."),
    where: Optional[str] = typer.Option(None, "--where", help='Which pending drafts, e.g. "dataset=mine,lang=ja".'),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what it would decide; change nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Decide pending, judged drafts with a policy (audit reviewer policy:NAME@HASH; `review reset` undoes)."""
    from judging import gate
    from review.filters import parse_filter
    from review.policy import apply_policy

    with wiring(ctx) as wired:
        result = apply_policy(wired.uow, name, parse_filter(where), dry_run=dry_run)
        fired = [] if dry_run else gate.release_ready(wired)
    counts = result.counts()
    if as_json:
        print_json({**counts, "dry_run": dry_run, "released": [list(f) for f in fired]})
        return
    verb = "would decide" if dry_run else "decided"
    console.print(f"policy {name} {verb}: {counts['approved']} approved, {counts['rejected']} rejected; "
                  f"{counts['left']} left for people, {counts['unjudged']} not judged yet"
                  + (f", {counts['conflicts']} changed meanwhile (skipped)" if counts["conflicts"] else ""))
    for batch_id, then in fired:
        console.print(f"batch {batch_id}: nothing pending any more; follow-up '{then}' released")


def agreement_cmd(
    ctx: typer.Context,
    policy: Optional[str] = typer.Option(None, "--policy", help="Only this policy's decisions (default: any)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """How far to trust the gate: over drafts both a person and the policy decided, the confusion matrix and
    Cohen's kappa, overall and per language."""
    from review.agreement import agreement, render_agreement

    with wiring(ctx) as wired, wired.uow() as uow:
        report = agreement(uow, policy)
    print_json(report) if as_json else console.print(render_agreement(report))


def release_after_review(ctx: typer.Context) -> None:
    # After every review command (when its context closes): follow-ups held for review fire once nothing of
    # their batch is pending any more (judging/gate.py).
    ctx.call_on_close(lambda: _release_held(ctx))


def _release_held(ctx: typer.Context) -> None:
    from cli.context import err_console
    from judging import gate
    from reasongen.bootstrap import bootstrap

    try:
        wired = bootstrap(ctx.find_root().obj)
    except Exception:  # noqa: BLE001 - the command itself already reported an unusable database
        return
    try:
        for batch_id, then in gate.release_ready(wired):
            err_console.print(f"batch {batch_id}: nothing pending any more; follow-up '{then}' released")
    finally:
        wired.close()


def register(app: typer.Typer) -> None:
    app.add_typer(policy_app, name="policy")
    from cli.review import review_app

    review_app.command("apply-policy")(apply_policy_cmd)
    review_app.command("agreement")(agreement_cmd)
    review_app.callback()(release_after_review)

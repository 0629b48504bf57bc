"""`reasongen review`: list, show, decide (one by one, in bulk, from a spreadsheet), edit, history.

Exit status (README "Exit codes"): 0 done, 1 some rows could not be applied (each one reported), 2 bad input,
3 a conflict (the draft changed since it was loaded, or its status does not allow the action; nothing was
overwritten), 4 no such draft. Several ids that fail for one reason exit with that reason's status.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.text import Text

from cli.context import console, err_console, fail, print_json, settings_from, wiring
from cli.errors import classify, print_error
from cli.tables import Col, listing
from reasongen.bootstrap import Wiring
from review import bulk, editor, exchange, render, service, terminal, views
from review.filters import parse_filter
from review.interactive import Terminal, review_loop
from review.rules import EDITABLE_FIELDS, TRANSITIONS, ReviewError, target_status
from storage.repositories.reviews import DraftRow

review_app = typer.Typer(help="Review drafts: approve, reject, edit; bulk and spreadsheet decisions; history.",
                         no_args_is_help=True)

REVIEWER = typer.Option(None, "--reviewer", help="Name for the audit trail. Default: REASONGEN_REVIEWER, "
                                                  "else your login name.")
WHERE = typer.Option(None, "--where", help='Filters, e.g. "lang=en,flags=none". Keys: status, dataset, lang, '
                                            "field, uniqueness, flag=NAME, flags=none, is_fake=true|false.")
IDS = typer.Argument(None, metavar="ID[@VERSION]",
                     help="Draft ids; ID@VERSION fails with a conflict unless the draft is at VERSION.",
                     show_default=False)
# At 80 columns the version and field go first; the draft id is never cut.
DRAFT_COLUMNS = [Col("id", key=True, justify="right"), Col("status", key=True), Col("v", drop=True),
                 Col("dataset/key", min_width=12), Col("lang", key=True), Col("field", drop=True),
                 Col("flags", min_width=8), Col("response", excerpt=True, min_width=20)]
DRY_RUN = typer.Option(False, "--dry-run", help="Only list the drafts it would change.")


def register(app: typer.Typer) -> None:
    app.add_typer(review_app, name="review")


def _error(message: str) -> None:
    print_error(message, err_console)


def _reviewer(ctx: typer.Context, explicit: str | None) -> str:
    return service.reviewer_name(explicit, settings_from(ctx).reviewer)


@review_app.command("list")
def list_cmd(
    ctx: typer.Context,
    status: str = typer.Option(None, help="pending, approved, rejected or failed."),
    dataset: str = typer.Option(None, help="Dataset name."),
    lang: str = typer.Option(None, help="Record language: en, ja, zh."),
    field: str = typer.Option(None, help="Record field tag, e.g. math."),
    flag: str = typer.Option(None, help="Only drafts with this check flag; 'none' for drafts without flags."),
    where: str = WHERE,
    limit: int = typer.Option(50, min=1, help="Show at most this many."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List current drafts (oldest first)."""
    with wiring(ctx) as wired, wired.uow() as uow:
        flt = parse_filter(where, status=status, dataset=dataset, lang=lang, field=field, flag=flag)
        rows, total = uow.reviews.find(flt, limit=limit), uow.reviews.count(flt)
        if as_json:
            print_json([views.draft_dict(r) for r in rows])
        else:
            title = f"{len(rows)} of {total} drafts"
            console.print(listing(DRAFT_COLUMNS, [render.draft_cells(r) for r in rows], console, title=title, noun="draft"))


@review_app.command("show")
def show_cmd(ctx: typer.Context, draft_id: int = typer.Argument(..., metavar="ID"),
             as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show a draft next to its source record and the restructured prompt."""
    with wiring(ctx) as wired, wired.uow() as uow:
        row = service.load(uow, draft_id)
        if as_json:
            print_json(views.draft_dict(row))
        else:
            console.print(render.draft_view(row, console.width))


@review_app.command("approve")
def approve_cmd(ctx: typer.Context, ids: list[str] = IDS, where: str = WHERE,
                note: str = typer.Option(None, help="Optional note kept in the history."),
                dry_run: bool = DRY_RUN, reviewer: str = REVIEWER) -> None:
    """Approve drafts by id, or every pending draft matching --where."""
    _decide(ctx, "approve", ids, where, note, dry_run, reviewer)


@review_app.command("reject")
def reject_cmd(ctx: typer.Context, ids: list[str] = IDS, where: str = WHERE,
               note: str = typer.Option(..., help="Why (required): regeneration uses it as guidance."),
               dry_run: bool = DRY_RUN, reviewer: str = REVIEWER) -> None:
    """Reject drafts by id, or every pending draft matching --where, with a note."""
    _decide(ctx, "reject", ids, where, note, dry_run, reviewer)


@review_app.command("reset")
def reset_cmd(ctx: typer.Context, ids: list[str] = IDS, where: str = WHERE,
              note: str = typer.Option(None, help="Optional note kept in the history."),
              dry_run: bool = DRY_RUN, reviewer: str = REVIEWER) -> None:
    """Put approved or rejected drafts back to pending."""
    _decide(ctx, "reset", ids, where, note, dry_run, reviewer)


def _decide(ctx: typer.Context, action: str, ids: list[str] | None, where: str | None, note: str | None,
            dry_run: bool, reviewer: str | None) -> None:
    if bool(ids) == bool(where):
        fail("give draft ids or --where (not both)")
    name = _reviewer(ctx, reviewer)
    with wiring(ctx) as wired:
        if where:
            result = bulk.bulk_decide(wired.uow, parse_filter(where), action, name, note=note, dry_run=dry_run)
            return _report_bulk(result, action, dry_run)
        targets = [_target(t) for t in ids or []]
        failures = [e for e in (_decide_one(wired, *t, action, name, note, dry_run) for t in targets) if e]
    _exit_for(failures)


def _target(text: str) -> tuple[int, int | None]:
    draft_id, sep, version = text.partition("@")
    if not draft_id.isdigit() or (sep and not version.isdigit()):
        fail(f"bad draft id {text!r}: use ID or ID@VERSION, e.g. 12 or 12@3")
    return int(draft_id), int(version) if sep else None


def _decide_one(wired: Wiring, draft_id: int, version: int | None, action: str, reviewer: str, note: str | None,
                dry_run: bool) -> ReviewError | None:
    try:
        with wired.uow() as uow:
            row = service.load(uow, draft_id, version)
            if _already(row.draft.status, action):
                console.print(f"draft {draft_id} is already {row.draft.status}; nothing to do")
                return None
            if dry_run:
                target_status(action, row.draft.status, draft_id)
                console.print(f"would {action} draft {draft_id}")
                return None
            new = service.decide(uow, draft_id, row.draft.version, action, reviewer, note=note)
            uow.commit()
    except ReviewError as exc:
        _error(str(exc))
        return exc
    console.print(f"draft {draft_id}: {action} done (version {new})")
    return None


def _already(status: str, action: str) -> bool:
    """Approving an approved draft (or rejecting a rejected one) is a no-op, not an error."""
    return action in ("approve", "reject") and TRANSITIONS[action][1] == status


def _exit_for(failures: list[ReviewError]) -> None:
    """The failures' common exit status (not found 4, conflict 3, bad input 2), else 1."""
    codes = {classify(f)[0] for f in failures}
    if codes:
        raise typer.Exit(int(codes.pop()) if len(codes) == 1 else 1)


def _report_bulk(result: bulk.BulkResult, action: str, dry_run: bool) -> None:
    if dry_run:
        listed = f": {_ids(result.planned)}" if result.planned else ""
        console.print(f"would {action} {len(result.planned)} drafts{listed}")
        return
    for _, error in result.failed:
        _error(str(error))
    console.print(f"{action}: {len(result.applied)} of {len(result.planned)} drafts")
    _exit_for([e for _, e in result.failed])


def _ids(ids: list[int], shown: int = 30) -> str:
    return ", ".join(map(str, ids[:shown])) + (f" … (+{len(ids) - shown})" if len(ids) > shown else "")


@review_app.command("auto")
def auto_cmd(ctx: typer.Context, where: str = WHERE, dry_run: bool = DRY_RUN,
             yes: bool = typer.Option(False, "--yes", help="Really approve them."),
             reviewer: str = REVIEWER) -> None:
    """Approve every pending draft that no check flagged (needs --yes; --dry-run lists them)."""
    with wiring(ctx) as wired:
        result = bulk.auto_approve(wired.uow, parse_filter(where), _reviewer(ctx, reviewer), dry_run=not yes)
    if not yes and not dry_run:
        fail(f"{len(result.planned)} unflagged pending drafts would be approved; "
             "re-run with --yes to approve them, or --dry-run to list them", code=1)
    _report_bulk(result, "auto-approve", dry_run=not yes)


@review_app.command("edit")
def edit_cmd(ctx: typer.Context, draft_id: int = typer.Argument(..., metavar="ID"), reviewer: str = REVIEWER) -> None:
    """Edit a draft's text in $EDITOR; applied only if nobody changed the draft meanwhile."""
    name = _reviewer(ctx, reviewer)
    with wiring(ctx) as wired:
        with wired.uow() as uow:
            row = service.load(uow, draft_id)
        target_status("edit", row.draft.status, draft_id)
        changes = _edit_in_editor(row)
        if not changes:
            console.print(("no changes" if changes == {} else "edit aborted") + f"; draft {draft_id} left as it was")
            raise typer.Exit(0 if changes == {} else 1)
        try:
            with wired.uow() as uow:
                version = service.edit(uow, draft_id, row.draft.version, name, changes)
                uow.commit()
        except ReviewError:  # a conflict, or the draft was regenerated meanwhile: keep the reviewer's text
            kept = editor.keep(draft_id, changes, row.draft.version)
            err_console.print(f"your edit is kept in {kept}", soft_wrap=True, highlight=False)
            raise
    console.print(f"draft {draft_id}: edited (version {version})")


def _edit_in_editor(row: DraftRow) -> dict[str, str] | None:
    """The fields the reviewer changed ({} if none), or None if aborted."""
    fields = {name: getattr(row.draft, name) for name in EDITABLE_FIELDS}
    values = editor.edit_loop(row.draft.id, row.draft.version, fields,
                              lambda v: service.validated_edits(row, v), _ask_retry)
    if values is None:
        return None
    return service.validated_edits(row, values)


def _ask_retry(problem: str) -> bool:
    err_console.print(Text(f"invalid: {problem}", "red"))
    err_console.print("Reopen the editor to fix it? [Y/n] ", end="", markup=False)
    answer = terminal.read_key()
    err_console.print()
    return answer in ("y", "", "\r", "\n")


@review_app.command("next")
def next_cmd(ctx: typer.Context, where: str = WHERE, reviewer: str = REVIEWER,
             sample: int = typer.Option(None, "--sample", min=1, help="Spot-check N drafts a policy decided "
                                        "(a reproducible sample) instead of reviewing pending ones."),
             stratify: str = typer.Option(None, "--stratify", help="With --sample: equal shares per lang, field "
                                          "and/or uniqueness, e.g. lang,field."),
             seed: int = typer.Option(0, "--seed", help="With --sample: another seed draws another sample.")) -> None:
    """Review pending drafts one by one: a approve, r reject (with a note), e edit, s skip, q quit."""
    term = Terminal(console=console, read_key=terminal.read_key, read_line=terminal.read_line, edit=_edit_in_editor)
    if sample:
        from judging.cli_sample import spot_check

        return spot_check(ctx, term, sample, stratify, seed, where, _reviewer(ctx, reviewer))
    with wiring(ctx) as wired:
        done = review_loop(wired.uow, parse_filter(where), _reviewer(ctx, reviewer), term)
    console.print("session: " + (", ".join(f"{k} {v}" for k, v in sorted(done.items())) or "no decisions"))


@review_app.command("export")
def export_cmd(
    ctx: typer.Context,
    status: str = typer.Option("pending", help="Which drafts: pending, approved, rejected or failed."),
    where: str = WHERE,
    fmt: str = typer.Option(None, "--format", help="jsonl or csv (default: from --out's suffix, else jsonl)."),
    out: Path = typer.Option(None, "--out", help="File to write (default: standard output).", dir_okay=False),
) -> None:
    """Export drafts with an empty 'decision' column to fill in (approve/reject/edit/reset) and import."""
    with wiring(ctx) as wired, wired.uow() as uow:
        fmt = exchange.format_of(out or Path("-"), fmt or (None if out else "jsonl"))
        flt = parse_filter(where, status=status)
        n = exchange.export_file(uow, flt, out, fmt) if out else exchange.export_drafts(uow, flt, sys.stdout, fmt)
    err_console.print(f"exported {n} drafts" + (f" to {out}" if out else ""))


@review_app.command("import")
def import_cmd(ctx: typer.Context, file: Path = typer.Argument(..., exists=True, dir_okay=False),
               fmt: str = typer.Option(None, "--format", help="jsonl or csv (default: from the file name)."),
               reviewer: str = REVIEWER) -> None:
    """Apply the decisions of an exported file; report every row that could not be applied."""
    with wiring(ctx) as wired:
        report = exchange.import_decisions(wired.uow, file, _reviewer(ctx, reviewer), fmt)
    for error in report.errors:
        _error(error)
    console.print(f"applied {report.applied}, left alone {report.skipped}, could not apply {len(report.errors)}")
    if report.errors:
        raise typer.Exit(1)


@review_app.command("history")
def history_cmd(ctx: typer.Context, draft_id: int = typer.Argument(..., metavar="ID"),
                as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Who did what to a draft, when, with the text before and after."""
    with wiring(ctx) as wired, wired.uow() as uow:
        events = service.history(uow, draft_id)
        if as_json:
            print_json([views.event_dict(e) for e in events])
        else:
            console.print(render.history_view(events))

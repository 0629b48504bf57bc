"""`reasongen ingest`, `reasongen datasets`, `reasongen show`: load a dataset and look at it."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from enum import Enum
from pathlib import Path

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from cli.context import console, err_console, print_json, settings_from, wiring
from cli.tables import Col, listing
from storage.ingest import IngestOptions, IngestSummary, Rejection, ingest_file
from storage.ingest.validate import parse_columns
from storage.repositories.records import Breakdown, DatasetOverview

SUMMARY_COLUMNS = ("read", "inserted", "updated", "unchanged", "rejected", "deleted", "restored")


class Format(str, Enum):
    auto = "auto"
    jsonl = "jsonl"
    json = "json"
    csv = "csv"
    parquet = "parquet"
    hf = "hf"


def ingest(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="File (JSONL, JSON array, CSV, Parquet) or a `datasets` save_to_disk folder."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset to load into; created when new."),
    fmt: Format = typer.Option(Format.auto, "--format", "-f", help="Input format; auto guesses from the name."),
    prune: bool = typer.Option(False, "--prune", help="Mark records missing from this file as deleted (kept, not erased)."),
    strict: bool = typer.Option(False, "--strict", help="Write nothing at all if any line is rejected."),
    max_record_bytes: int = typer.Option(None, "--max-record-bytes", min=1, show_default=False,
                                         help="Reject records larger than this. Default: REASONGEN_MAX_RECORD_BYTES (1 MB)."),
    batch_size: int = typer.Option(5000, "--batch-size", min=1, help="Records per bulk write."),
    columns: list[str] = typer.Option([], "--map", metavar="FIELD=COLUMN",
                                      help="Read a record field from another column, e.g. --map output=response "
                                      "--map input=context (Dolly); repeat it or separate pairs with commas."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Load records into a dataset.

    Fields: instruction and output (required), input, id (derived from the question when missing), lang
    (en/ja/zh, detected when missing), field, uniqueness; other keys are kept as metadata, so Alpaca files
    load as they are. Re-running with the same file changes nothing; a changed record keeps its id and gets
    a new content hash and version (the old content is kept). Bad lines are reported as file:line: reason
    and the rest is loaded; the exit status is then 1 (and --prune is skipped)."""
    limit = max_record_bytes or settings_from(ctx).max_record_bytes
    try:
        mapped = parse_columns(columns)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--map") from None
    options = IngestOptions(dataset, fmt.value, prune, strict, limit, batch_size, mapped)
    with wiring(ctx) as wired, _progress() as (on_reject, on_progress):
        summary = ingest_file(wired.uow, path, options, on_reject=on_reject, on_progress=on_progress)
    print_json(summary.as_dict()) if as_json else _print_summary(summary)
    raise typer.Exit(1 if summary.rejected else 0)


class _progress:
    """A Rich progress bar on stderr (records, records/s, rejected); rejections print above it."""

    def __enter__(self) -> tuple[Callable[[Rejection], None], Callable[[IngestSummary], None]]:
        columns = (SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.fields[read]:,} read"),
                   TextColumn("{task.fields[rate]:,.0f} records/s"), TextColumn("{task.fields[rejected]} rejected"),
                   TimeElapsedColumn())
        self.bar = Progress(*columns, console=err_console, transient=True)
        self.task = self.bar.add_task("ingesting", total=None, read=0, rate=0.0, rejected=0)
        self.start = time.monotonic()
        self.bar.start()
        return self.on_reject, self.on_progress

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def on_reject(self, rejection: Rejection) -> None:
        self.bar.console.print(str(rejection), markup=False, highlight=False, soft_wrap=True)

    def on_progress(self, summary: IngestSummary) -> None:
        rate = summary.read / max(time.monotonic() - self.start, 1e-6)
        self.bar.update(self.task, read=summary.read, rate=rate, rejected=summary.rejected)


def _print_summary(summary: IngestSummary) -> None:
    cols = [Col(name, key=True, justify="right") for name in SUMMARY_COLUMNS]
    cells = [[f"{getattr(summary, name):,}" for name in SUMMARY_COLUMNS]]
    console.print(listing(cols, cells, console, title=f"{summary.file} -> {summary.dataset}", noun="read"))
    for note in summary.notes:
        console.print(f"[yellow]{note}[/]", highlight=False)


DATASET_COLUMNS = [Col("dataset", key=True), Col("records", key=True, justify="right"), Col("languages", min_width=10),
                   Col("deleted", justify="right", drop=True), Col("created", key=True, drop=True),
                   Col("updated", key=True)]


def datasets(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """List datasets: live records, languages, created and updated times."""
    with wiring(ctx) as wired, wired.uow() as uow:
        rows = uow.records.overview()
    if as_json:
        print_json([_overview_dict(row) for row in rows])
        return
    if not rows:
        console.print("No datasets yet. Load one with: reasongen ingest FILE --dataset NAME")
        return
    cells = [[row.name, f"{row.records:,}", ", ".join(f"{lang} {n}" for lang, n in sorted(row.languages.items())),
              f"{row.deleted:,}", _when(row.created_at), _when(row.updated_at)] for row in rows]
    console.print(listing(DATASET_COLUMNS, cells, console, noun="dataset"))


def _overview_dict(row: DatasetOverview) -> dict[str, object]:
    return {"name": row.name, "records": row.records, "deleted": row.deleted, "languages": row.languages,
            "created_at": row.created_at.isoformat(), "updated_at": row.updated_at.isoformat()}


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M")


def show(
    ctx: typer.Context,
    dataset: str = typer.Argument(..., help="Dataset name (see reasongen datasets)."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Counts by lang x field x uniqueness, and how many records are stale (never drafted, or changed since)."""
    with wiring(ctx) as wired, wired.uow() as uow:
        found = uow.records.breakdown(dataset)
    if as_json:
        print_json(_breakdown_dict(found))
        return
    cols = [Col("lang", key=True), Col("field"), Col("uniqueness"), Col("records", key=True, justify="right")]
    cells = [[lang, field or "-", uniqueness or "-", f"{n:,}"] for lang, field, uniqueness, n in found.groups]
    console.print(listing(cols, cells, console, title=f"{found.dataset}: {found.records:,} records"))
    stale = found.stale
    console.print(f"stale: {stale.total:,} ({stale.never_drafted:,} never drafted, "
                  f"{stale.changed:,} changed since their draft)", highlight=False)
    if stale.shared:
        console.print(f"{stale.shared:,} records share a draft with an identical record (one request each group)",
                      highlight=False)


def _breakdown_dict(found: Breakdown) -> dict[str, object]:
    groups = [{"lang": lang, "field": field, "uniqueness": uniq, "records": n} for lang, field, uniq, n in found.groups]
    stale = {"total": found.stale.total, "never_drafted": found.stale.never_drafted, "changed": found.stale.changed,
             "shared": found.stale.shared}
    return {"dataset": found.dataset, "records": found.records, "groups": groups, "stale": stale}


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
    app.command("datasets")(datasets)
    app.command("show")(show)

"""Export drafts to JSONL/CSV for review in a spreadsheet, and import the decisions back.

Each row carries the draft's id and version; a decision is applied only if the draft is still at
that version, so a spreadsheet that sat open for a day cannot overwrite newer work. Every row that
cannot be applied is reported as ``file:line: reason``.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from review.rules import EDITABLE_FIELDS, ReviewError
from review.service import check_version, decide, load, validated_edits
from storage.repositories.reviews import DraftFilter, DraftRow
from storage.uow import UnitOfWork

COLUMNS = [
    "id", "version", "dataset", "key", "lang", "field", "uniqueness", "record_instruction", "record_input",
    "record_output", *EDITABLE_FIELDS, "flags", "is_fake", "edited", "status", "review_note", "decision", "note",
]
FORMATS = ("jsonl", "csv")
COMMIT_EVERY = 200
# What may be written in the decision column (case-insensitive); empty or "skip" leaves the draft alone.
DECISIONS = {
    "approve": "approve", "approved": "approve", "a": "approve",
    "reject": "reject", "rejected": "reject", "r": "reject",
    "edit": "edit", "edited": "edit", "e": "edit",
    "reset": "reset", "pending": "reset",
    "": None, "skip": None, "s": None,
}


@dataclass
class ImportReport:
    applied: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)


def format_of(path: Path, given: str | None = None) -> str:
    fmt = (given or path.suffix.lstrip(".")).lower()
    fmt = "jsonl" if fmt in ("json", "ndjson") else fmt
    if fmt not in FORMATS:
        raise ValueError(f"{path}: cannot tell the format from the name; pass --format jsonl or --format csv")
    return fmt


# -- export ------------------------------------------------------------------------------------------
def export_drafts(uow: UnitOfWork, flt: DraftFilter, out: TextIO, fmt: str) -> int:
    rows = (export_row(r) for r in uow.reviews.iter_rows(flt))
    return _write_csv(rows, out) if fmt == "csv" else _write_jsonl(rows, out)


def export_file(uow: UnitOfWork, flt: DraftFilter, path: Path, fmt: str) -> int:
    """Write the whole file or nothing: a half-written export must not be mistaken for a full one."""
    partial = path.with_name(path.name + ".part")
    # utf-8-sig for CSV: spreadsheet programs then read Japanese and Chinese text correctly.
    try:
        with partial.open("w", encoding="utf-8-sig" if fmt == "csv" else "utf-8", newline="") as handle:
            n = export_drafts(uow, flt, handle, fmt)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)
    return n


def export_row(row: DraftRow) -> dict[str, Any]:
    d, r = row.draft, row.record
    return {
        "id": d.id, "version": d.version, "dataset": row.dataset, "key": r.key, "lang": r.lang, "field": r.field,
        "uniqueness": r.uniqueness, "record_instruction": r.instruction, "record_input": r.input,
        "record_output": r.output, **{name: getattr(d, name) or "" for name in EDITABLE_FIELDS},
        "flags": list(d.flags or []), "is_fake": d.is_fake, "edited": d.edited, "status": d.status,
        "review_note": d.review_note or "", "decision": "", "note": "",
    }


def _write_jsonl(rows: Iterator[dict[str, Any]], out: TextIO) -> int:
    n = 0
    for n, row in enumerate(rows, 1):
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return n


def _write_csv(rows: Iterator[dict[str, Any]], out: TextIO) -> int:
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    n = 0
    for n, row in enumerate(rows, 1):
        writer.writerow({**row, "flags": ";".join(row["flags"])})
    return n


# -- import ------------------------------------------------------------------------------------------
def import_decisions(uow_factory: Callable[[], UnitOfWork], path: Path, reviewer: str,
                     fmt: str | None = None) -> ImportReport:
    """Apply each row's decision; collect what could not be applied. Commits every COMMIT_EVERY rows:
    a refused row writes nothing (decide checks before it writes), so it never undoes its neighbours."""
    report = ImportReport()
    fmt = format_of(path, fmt)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = _csv_rows(handle) if fmt == "csv" else _jsonl_rows(handle)
        while chunk := list(itertools.islice(rows, COMMIT_EVERY)):
            with uow_factory() as uow:
                drafts = _preload(uow, [row for _, row in chunk])
                for line, row in chunk:
                    _import_row(uow, row, reviewer, drafts, f"{path}:{line}", report)
                uow.commit()
    return report


def _preload(uow: UnitOfWork, rows: list[dict[str, Any] | ValueError]) -> dict[int, DraftRow]:
    """The chunk's drafts in one query (a row without a usable id is reported when it is applied)."""
    ids = {str(row.get("id")).strip() for row in rows if isinstance(row, dict)}
    found = uow.reviews.find(DraftFilter(ids=tuple(int(i) for i in ids if i.isdigit()), current_only=False))
    return {row.draft.id: row for row in found}


def _import_row(uow: UnitOfWork, row: dict[str, Any] | ValueError, reviewer: str, drafts: dict[int, DraftRow],
                where: str, report: ImportReport) -> None:
    try:
        if isinstance(row, ValueError):
            raise row
        applied = _apply_row(uow, row, reviewer, drafts)
    except (ReviewError, ValueError) as exc:
        report.errors.append(f"{where}: {exc}")
        return
    report.applied += applied
    report.skipped += not applied


def _csv_rows(handle: TextIO) -> Iterator[tuple[int, dict[str, Any] | ValueError]]:
    reader = csv.DictReader(handle)
    start = 2  # line 1 is the header; a quoted cell may span lines, so track where each row starts
    for row in reader:
        yield start, row
        start = reader.line_num + 1


def _jsonl_rows(handle: TextIO) -> Iterator[tuple[int, dict[str, Any] | ValueError]]:
    for line, text in enumerate(handle, 1):
        if text.strip():
            yield line, _parse_jsonl(text)


def _parse_jsonl(text: str) -> dict[str, Any] | ValueError:
    """The row, or the reason it is not one (reported with its line, the rest of the file goes on)."""
    try:
        row = json.loads(text)
    except json.JSONDecodeError as exc:
        return ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})")
    return row if isinstance(row, dict) else ValueError("each line must be a JSON object")


def _apply_row(uow: UnitOfWork, row: dict[str, Any], reviewer: str, drafts: dict[int, DraftRow]) -> bool:
    decision = _decision(row)
    draft_id, version = _int(row, "id"), _int(row, "version")
    changes = {name: row[name] for name in EDITABLE_FIELDS if row.get(name) is not None}
    # Popped, so a draft listed twice in a file is read again the second time.
    known = drafts.pop(draft_id, None) or load(uow, draft_id)
    if decision is None:
        if validated_edits(check_version(known, version), changes):
            raise ValueError("text was changed but the decision column is empty; write edit, approve or reject")
        return False
    decide(uow, draft_id, version, decision, reviewer, note=_text(row.get("note")), changes=changes, row=known)
    return True


def _decision(row: dict[str, Any]) -> str | None:
    text = (_text(row.get("decision")) or "").strip().lower()
    if text not in DECISIONS:
        raise ValueError(f"unknown decision {text!r}; use approve, reject, edit, reset or leave it empty")
    return DECISIONS[text]


def _int(row: dict[str, Any], name: str) -> int:
    value = row.get(name)
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {value!r}") from None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)

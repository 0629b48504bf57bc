"""Export to a spreadsheet-friendly file, decide there, import back with the version check."""

import csv
import io
import json

import pytest

from review import exchange, service
from storage.repositories.reviews import DraftFilter
from tests.review.conftest import draft, events


def _export(wired, fmt, path, flt=DraftFilter(status="pending")):  # type: ignore[no-untyped-def]
    with wired.uow() as uow, path.open("w", encoding="utf-8", newline="") as handle:
        return exchange.export_drafts(uow, flt, handle, fmt)


def _read_csv(path):  # type: ignore[no-untyped-def]
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def _write_csv(path, rows):  # type: ignore[no-untyped-def]
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=exchange.COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def test_export_has_one_row_per_draft_with_record_and_draft_fields(wired, drafts, tmp_path):
    assert _export(wired, "jsonl", tmp_path / "p.jsonl") == 4  # the failed draft is not pending
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text(encoding="utf-8").splitlines()]
    assert list(rows[0]) == exchange.COLUMNS
    ja = next(r for r in rows if r["key"] == "ja-1")
    assert (ja["id"], ja["version"], ja["lang"], ja["record_instruction"], ja["status"], ja["decision"]) == (
        drafts["ja-1"], 1, "ja", "二たす二は？", "pending", "")
    assert ja["reasoning"] == draft(wired, drafts["ja-1"]).reasoning
    assert next(r for r in rows if r["key"] == "en-2")["flags"] == ["lang_mismatch"]


def test_csv_round_trip_applies_approve_reject_edit_and_reports_bad_rows(wired, drafts, tmp_path):
    path = tmp_path / "review.csv"
    _export(wired, "csv", path)
    rows = {r["key"]: r for r in _read_csv(path)}
    rows["en-1"]["decision"] = "approve"
    rows["en-2"].update(decision="Reject", note="Summary misses the point.")
    rows["ja-1"].update(decision="edit", reasoning="Line one.\nLine two, 日本語。")  # a cell over two lines
    rows["zh-1"].update(decision="frobnicate")
    _write_csv(path, [rows[k] for k in ("en-1", "en-2", "ja-1", "zh-1")])
    report = exchange.import_decisions(wired.uow, path, "carol")
    # Header is line 1; ja-1's reasoning spans lines 4-5, so zh-1 starts on line 6.
    assert report.errors == [f"{path}:6: unknown decision 'frobnicate'; use approve, reject, edit, reset or leave it empty"]
    assert (report.applied, report.skipped) == (3, 0)
    assert draft(wired, drafts["en-1"]).status == "approved"
    en2 = draft(wired, drafts["en-2"])
    assert (en2.status, en2.review_note, en2.reviewer) == ("rejected", "Summary misses the point.", "carol")
    ja = draft(wired, drafts["ja-1"])
    assert (ja.status, ja.edited, ja.reasoning) == ("pending", True, "Line one.\nLine two, 日本語。")
    assert draft(wired, drafts["zh-1"]).version == 1


def test_jsonl_round_trip_with_stale_and_broken_rows(wired, drafts, tmp_path):
    path = tmp_path / "review.jsonl"
    _export(wired, "jsonl", path)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    by_key = {r["key"]: r for r in rows}
    by_key["en-1"]["decision"] = "approved"
    by_key["ja-1"].update(decision="approve", response="Four, in English.")  # edit and approve
    by_key["zh-1"]["decision"] = "reject"  # no note
    by_key["en-2"]["reasoning"] = "Changed but undecided."
    with wired.uow() as uow:  # someone approves en-1 after the export
        service.approve(uow, drafts["en-1"], 1, "bob")
        uow.commit()
    lines = [json.dumps(by_key[k], ensure_ascii=False) for k in ("en-1", "en-2", "ja-1", "zh-1")]
    missing = '{"id": 999, "version": 1, "decision": "approve"}'
    twice = json.dumps(dict(by_key["en-1"], id=drafts["ja-1"], version=1, decision="reset"))  # ja-1 moved on above
    path.write_text("\n".join([*lines, "", "{not json", '["a list"]', missing, twice]) + "\n", encoding="utf-8")
    report = exchange.import_decisions(wired.uow, path, "carol")
    assert report.errors[0].startswith(f"{path}:1: draft {drafts['en-1']} changed since you loaded it (version 1 -> 2 by bob")
    assert report.errors[1:-1] == [
        f"{path}:2: text was changed but the decision column is empty; write edit, approve or reject",
        f"{path}:4: rejecting draft {drafts['zh-1']} needs a note saying why (it guides regeneration)",
        f"{path}:6: not valid JSON (Expecting property name enclosed in double quotes at column 2)",
        f"{path}:7: each line must be a JSON object",
        f"{path}:8: no draft 999; list drafts with: reasongen review list",
    ]
    assert report.errors[-1].startswith(f"{path}:9: draft {drafts['ja-1']} changed since you loaded it (version 1 -> 3")
    assert report.applied == 1
    ja = draft(wired, drafts["ja-1"])
    assert (ja.status, ja.edited, ja.response, ja.version) == ("approved", True, "Four, in English.", 3)
    assert [e.action for e in events(wired, drafts["ja-1"])] == ["edit", "approve"]
    assert [e.reviewer for e in events(wired, drafts["en-1"])] == ["bob"]  # bob's approval stands alone


def test_importing_the_same_file_twice_applies_nothing_twice(wired, drafts, tmp_path):
    path = tmp_path / "review.jsonl"
    _export(wired, "jsonl", path, DraftFilter(lang="en", status="pending"))
    rows = [dict(json.loads(line), decision="approve") for line in path.read_text(encoding="utf-8").splitlines()]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert exchange.import_decisions(wired.uow, path, "carol").applied == 2
    again = exchange.import_decisions(wired.uow, path, "carol")
    assert again.applied == 0 and len(again.errors) == 2
    assert len(events(wired, drafts["en-1"])) == 1


@pytest.mark.parametrize(("name", "given", "fmt"), [("a.csv", None, "csv"), ("a.JSONL", None, "jsonl"),
                                                    ("a.txt", "csv", "csv"), ("a.json", None, "jsonl")])
def test_format_from_the_name_or_option(tmp_path, name, given, fmt):
    assert exchange.format_of(tmp_path / name, given) == fmt


def test_unknown_format_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="pass --format jsonl or --format csv"):
        exchange.format_of(tmp_path / "a.xlsx")


def test_csv_export_writes_flags_as_text(wired, drafts):
    out = io.StringIO()
    with wired.uow() as uow:
        exchange.export_drafts(uow, DraftFilter(flag="lang_mismatch"), out, "csv")
    [row] = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert (row["key"], row["flags"]) == ("en-2", "lang_mismatch")

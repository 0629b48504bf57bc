"""Ingest into a real database (SQLite and PostgreSQL): counts, rejections, idempotence, history, prune."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from storage.models import Dataset, Draft, Record, RecordVersion
from tests.ingest.conftest import EN, JA, ZH, jsonl


def records(wired, dataset="d"):
    with wired.uow() as uow:
        stmt = select(Record).join(Dataset).where(Dataset.name == dataset).order_by(Record.key)
        found = {r.key: r for r in uow.session.scalars(stmt)}
        uow.session.expunge_all()  # keep them readable after the block rolls back
        return found


def versions(wired, record_id):
    with wired.uow() as uow:
        stmt = select(RecordVersion).where(RecordVersion.record_id == record_id).order_by(RecordVersion.version)
        found = list(uow.session.scalars(stmt))
        uow.session.expunge_all()
        return found


def counts(summary):
    return {k: getattr(summary, k) for k in ("read", "inserted", "updated", "unchanged", "rejected", "deleted", "restored")}


def test_ingest_jsonl_stores_every_field(write, ingest, wired):
    row = {**JA, "source": "forum", "score": 3}
    summary, rejected = ingest(write("a.jsonl", jsonl(EN, row, ZH)))
    assert rejected == [] and counts(summary) == dict(read=3, inserted=3, updated=0, unchanged=0, rejected=0,
                                                      deleted=0, restored=0)
    got = records(wired)["ja-1"]
    assert (got.lang, got.instruction, got.input, got.output, got.field, got.uniqueness) == (
        "ja", JA["instruction"], "", JA["output"], "ml", "high")
    assert got.meta == {"source": "forum", "score": 3} and got.version == 1 and len(got.content_hash) == 64


@pytest.mark.parametrize("fmt", ["json", "csv", "parquet", "hf"])
def test_every_format_gives_the_same_records(fmt, write, ingest, wired, tmp_path):
    rows = [EN, JA, {**ZH, "input": ""}]
    ingest(write("ref.jsonl", jsonl(*rows)), dataset="ref")
    path = _write_format(fmt, rows, write, tmp_path)
    summary, rejected = ingest(path, dataset=fmt)
    assert rejected == [] and summary.inserted == 3
    ref, got = records(wired, "ref"), records(wired, fmt)
    assert {k: r.content_hash for k, r in got.items()} == {k: r.content_hash for k, r in ref.items()}


def _write_format(fmt, rows, write, tmp_path):
    if fmt == "json":
        return write("a.json", json.dumps(rows, ensure_ascii=False, indent=1))
    if fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        return write("a.csv", buf.getvalue())
    import pyarrow as pa

    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
        return tmp_path / "a.parquet"
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "hf"))
    return tmp_path / "hf"


def test_alpaca_file_ingests_as_it_is_with_detected_languages(write, ingest, wired):
    rows = [{"instruction": "Give three tips for staying healthy.", "input": "", "output": "Eat well, sleep, exercise."},
            {"instruction": "次の文を要約してください。", "input": "今日は雨が降ったので、試合は中止になった。", "output": "雨で試合が中止になった。"},
            {"instruction": "请把这句话翻译成英文。", "input": "我们明天见。", "output": "See you tomorrow."}]
    summary, rejected = ingest(write("alpaca.json", json.dumps(rows, ensure_ascii=False)))
    assert rejected == [] and summary.inserted == 3
    assert sorted(r.lang for r in records(wired).values()) == ["en", "ja", "zh"]
    assert all(key.startswith("h-") for key in records(wired))


def test_each_rejection_is_reported_and_valid_lines_are_kept(write, ingest, wired):
    lines = [
        json.dumps(EN),
        "{bad json",
        json.dumps({"id": "x1", "output": "o"}),
        json.dumps({"id": "x2", "instruction": ["q"], "output": "o"}),
        json.dumps({"id": "x3", "instruction": "Quelle heure est-il ?", "output": "Il est midi."}),
        json.dumps({"id": "x4", "lang": "en", "instruction": "q", "output": "o"})[:-1] + ', "n": "\x00"}',
        json.dumps({"id": "x6", "lang": "en", "instruction": "q" * 300, "output": "o"}),
        json.dumps({**EN, "output": "A different answer."}),
        json.dumps(ZH),
    ]
    raw = "\n".join(lines).encode() + b'\n{"id": "x5", "instruction": "caf\xe9", "output": "o"}\n'
    summary, rejected = ingest(write("bad.jsonl", raw), max_record_bytes=200)
    path = str(write("bad.jsonl", raw))
    assert rejected == [
        f"{path}:2: invalid JSON: unexpected character, expected a string key: line 1 column 2 (char 1)",
        f"{path}:3: missing required field 'instruction'",
        f"{path}:4: field 'instruction' must be a string, got list",
        f"{path}:5: unknown language: detected French (expected en, ja, zh)",
        f"{path}:6: contains a NUL byte",
        f"{path}:7: record is {len(lines[6])} bytes, over the limit of 200 (--max-record-bytes)",
        f"{path}:8: id 'en-1' repeated (first on line 1)",
        f"{path}:10: invalid UTF-8 (byte 0xe9 at column 33)",
    ]
    assert (summary.read, summary.inserted, summary.rejected) == (10, 2, 8)
    assert set(records(wired)) == {"en-1", "zh-1"}
    assert records(wired)["en-1"].output == EN["output"]


def test_ids_repeated_across_batches_are_rejected(write, ingest, wired):
    rows = [{**EN, "id": f"k{i}"} for i in range(5)] + [{**EN, "id": "k1", "output": "again"}, {**EN, "id": "k5"}]
    summary, rejected = ingest(write("r.jsonl", jsonl(*rows)), batch_size=2)
    assert [r.split(": ", 1)[1] for r in rejected] == ["id 'k1' repeated (first on line 2)"]
    assert rejected[0].endswith(":6: id 'k1' repeated (first on line 2)")
    assert summary.inserted == 6 and records(wired)["k1"].output == EN["output"]


def test_strict_writes_nothing_when_a_line_is_bad(write, ingest, wired):
    summary, rejected = ingest(write("s.jsonl", jsonl(EN, JA) + "oops\n"), strict=True)
    assert len(rejected) == 1 and summary.rejected == 1 and not summary.written
    assert summary.inserted == 0 and any("--strict" in n for n in summary.notes)
    with wired.uow() as uow:
        assert uow.session.scalar(select(func.count()).select_from(Dataset)) == 0
        assert uow.session.scalar(select(func.count()).select_from(Record)) == 0
    summary, _ = ingest(write("s.jsonl", jsonl(EN, JA)), strict=True)
    assert summary.written and summary.inserted == 2


def test_reingest_changes_nothing(write, ingest, wired):
    path = write("a.jsonl", jsonl(EN, JA, ZH))
    ingest(path)
    before = {k: (r.id, r.updated_at, r.version, r.content_hash) for k, r in records(wired).items()}
    summary, _ = ingest(path)
    assert (summary.inserted, summary.updated, summary.unchanged) == (0, 0, 3)
    assert {k: (r.id, r.updated_at, r.version, r.content_hash) for k, r in records(wired).items()} == before


def test_changed_record_keeps_its_id_and_keeps_history(write, ingest, wired):
    ingest(write("a.jsonl", jsonl(EN, JA)))
    old = records(wired)["en-1"]
    summary, _ = ingest(write("a.jsonl", jsonl({**EN, "output": "Better answer."}, JA)))
    assert (summary.inserted, summary.updated, summary.unchanged) == (0, 1, 1)
    new = records(wired)["en-1"]
    assert new.id == old.id and new.output == "Better answer." and new.version == 2
    assert new.content_hash != old.content_hash and new.updated_at > old.updated_at
    [history] = versions(wired, old.id)
    assert (history.version, history.content_hash, history.output) == (1, old.content_hash, EN["output"])
    assert versions(wired, records(wired)["ja-1"].id) == []


def test_prune_marks_missing_records_deleted_and_they_come_back(write, ingest, wired):
    ingest(write("a.jsonl", jsonl(EN, JA, ZH)))
    summary, _ = ingest(write("b.jsonl", jsonl(EN, ZH)), prune=True)
    assert summary.deleted == 1
    assert records(wired)["ja-1"].deleted_at is not None and records(wired)["en-1"].deleted_at is None
    with wired.uow() as uow:
        assert uow.records.count(records(wired)["ja-1"].dataset_id) == 2
    summary, _ = ingest(write("c.jsonl", jsonl(EN, JA, ZH)), prune=True)
    assert (summary.restored, summary.unchanged, summary.deleted) == (1, 3, 0)
    back = records(wired)["ja-1"]
    assert back.deleted_at is None and back.version == 1


def test_prune_is_skipped_when_lines_were_rejected(write, ingest, wired):
    ingest(write("a.jsonl", jsonl(EN, JA)))
    summary, _ = ingest(write("b.jsonl", jsonl(EN) + "broken\n"), prune=True)
    assert summary.deleted == 0 and "--prune skipped" in summary.notes[0]
    assert all(r.deleted_at is None for r in records(wired).values())


def test_breakdown_and_staleness(write, ingest, wired):
    ingest(write("a.jsonl", jsonl(EN, JA, ZH, {**EN, "id": "en-2"})))
    recs = records(wired)
    with wired.uow() as uow:
        for key in ("en-1", "ja-1"):
            uow.session.add(_draft(recs[key]))
        uow.commit()
    ingest(write("a.jsonl", jsonl({**EN, "output": "Changed."}, JA, ZH, {**EN, "id": "en-2"})))
    with wired.uow() as uow:
        found = uow.records.breakdown("d")
        overview = uow.records.overview()
    assert found.records == 4 and (found.stale.never_drafted, found.stale.changed, found.stale.total) == (2, 1, 3)
    assert ("en", "quality", "low", 2) in found.groups and ("ja", "ml", "high", 1) in found.groups
    assert [(o.name, o.records, o.languages) for o in overview] == [("d", 4, {"en": 2, "ja": 1, "zh": 1})]


def _draft(record):
    return Draft(record_id=record.id, cache_key=f"ck-{record.id}", record_hash=record.content_hash,
                 template_name="t", template_hash="h", backend="fake", model="m", is_current=True)


def test_deleted_record_that_returns_changed_is_restored_and_versioned(write, ingest, wired):
    ingest(write("a.jsonl", jsonl(EN, JA)))
    ingest(write("b.jsonl", jsonl(JA)), prune=True)
    old = records(wired)["en-1"]
    summary, _ = ingest(write("c.jsonl", jsonl({**EN, "output": "Revised."}, JA)))
    assert (summary.updated, summary.restored, summary.unchanged, summary.inserted) == (1, 1, 1, 0)
    back = records(wired)["en-1"]
    assert back.id == old.id and back.deleted_at is None and back.version == 2
    assert [v.output for v in versions(wired, old.id)] == [EN["output"]]


def test_a_file_that_breaks_midway_writes_nothing(write, ingest, wired):
    # A JSON object where an array was promised cannot be read at all: the error stops the ingest.
    with pytest.raises(ValueError, match="not an array"):
        ingest(write("o.json", '{"a": 1}'), fmt="json")
    with wired.uow() as uow:
        assert uow.session.scalar(select(func.count()).select_from(Dataset)) == 0
    summary, _ = ingest(write("ok.jsonl", jsonl(EN)))  # the connection is clean for the next ingest
    assert summary.inserted == 1


def test_rejections_are_reported_as_they_come_when_no_batch_fills(write, wired):
    from storage.ingest import IngestOptions, Stages, ingest_file
    from storage.ingest.readers import open_reader

    read: list[int] = []

    def counting_reader(path, fmt):
        for item in open_reader(path, fmt):
            read.append(item.line)
            yield item

    reported_after: list[int] = []
    summary = ingest_file(wired.uow, write("junk.jsonl", "junk\n" * 25), IngestOptions("d", batch_size=10),
                          stages=Stages(read=counting_reader), on_reject=lambda r: reported_after.append(len(read)))
    assert summary.rejected == 25
    assert reported_after[0] == 10 and reported_after[10] == 20 and reported_after[-1] == 25

"""The ingest, datasets and show commands through the real Typer app."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cli.main import app
from tests.ingest.conftest import EN, JA, ZH, jsonl

runner = CliRunner()


def run(db_url, *args):
    return runner.invoke(app, ["--database-url", db_url, *map(str, args)])


def test_ingest_prints_a_summary_and_exits_zero(db_url, write):
    result = run(db_url, "ingest", write("a.jsonl", jsonl(EN, JA, ZH)), "--dataset", "demo")
    assert result.exit_code == 0, result.output
    assert "inserted" in result.stdout and "rejected" in result.stdout


def test_ingest_json_summary_and_rejections_on_stderr(db_url, write):
    path = write("a.jsonl", jsonl(EN) + "not json\n" + jsonl(JA))
    result = run(db_url, "ingest", path, "-d", "demo", "--json")
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert (summary["read"], summary["inserted"], summary["rejected"], summary["written"]) == (3, 2, 1, True)
    assert f"{path}:2: invalid JSON: " in result.stderr
    again = json.loads(run(db_url, "ingest", path, "-d", "demo", "--json").stdout)
    assert (again["inserted"], again["unchanged"]) == (0, 2)


def test_strict_and_size_limit_options(db_url, write):
    path = write("a.jsonl", jsonl(EN, JA, {**ZH, "output": "x" * 400}))
    result = run(db_url, "ingest", path, "-d", "demo", "--strict", "--max-record-bytes", "300", "--json")
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["written"] is False and summary["rejected"] == 1
    assert ":3: record is " in result.stderr and "over the limit of 300" in result.stderr
    listing = json.loads(run(db_url, "datasets", "--json").stdout)
    assert listing == []


def test_datasets_and_show(db_url, write):
    run(db_url, "ingest", write("a.jsonl", jsonl(EN, JA, ZH, {**EN, "id": "en-2"})), "-d", "demo")
    [row] = json.loads(run(db_url, "datasets", "--json").stdout)
    assert (row["name"], row["records"], row["languages"]) == ("demo", 4, {"en": 2, "ja": 1, "zh": 1})
    shown = json.loads(run(db_url, "show", "demo", "--json").stdout)
    assert shown["records"] == 4 and shown["stale"] == {"total": 4, "never_drafted": 4, "changed": 0, "shared": 0}
    assert {"lang": "en", "field": "quality", "uniqueness": "low", "records": 2} in shown["groups"]
    table = run(db_url, "show", "demo")
    assert table.exit_code == 0 and "stale: 4" in table.stdout
    assert "demo" in run(db_url, "datasets").stdout


def errors(result):
    return " ".join(result.stderr.split())  # the error console wraps long lines


def test_clear_errors(db_url, write, tmp_path):
    missing = run(db_url, "ingest", tmp_path / "nope.jsonl", "-d", "demo")
    assert missing.exit_code == 2 and "no such file" in errors(missing)
    unknown = run(db_url, "show", "nope")
    assert unknown.exit_code == 4 and "No dataset named 'nope'" in errors(unknown)  # not found (README exit codes)
    guess = run(db_url, "ingest", write("a.txt", jsonl(EN)), "-d", "demo")
    assert guess.exit_code == 2 and "--format" in errors(guess)
    forced = run(db_url, "ingest", write("b.txt", jsonl(EN)), "-d", "demo", "--format", "jsonl")
    assert forced.exit_code == 0


def test_missing_schema_says_how_to_create_it(tmp_path, write):
    result = run(f"sqlite:///{tmp_path / 'empty.db'}", "ingest", write("a.jsonl", jsonl(EN)), "-d", "demo")
    assert result.exit_code == 5 and "reasongen db upgrade" in errors(result)  # database not usable


def test_bundled_sample_ingests_cleanly(db_url):
    from importlib.resources import files

    sample = files("cli") / "data" / "sample_multilingual.jsonl"
    result = run(db_url, "ingest", sample, "-d", "sample", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["inserted"] == 24


def test_map_reads_fields_from_other_columns(db_url, write):
    """A Dolly-shaped file (instruction, context, response, category): rejected with a hint, then loaded with --map."""
    dolly = [{"id": "d1", "instruction": "Why is the sky blue?", "context": "", "response": "Rayleigh scattering.",
              "category": "open_qa"},
             {"id": "d2", "instruction": "Summarize this.", "context": "Tokyo is the capital of Japan.",
              "response": "Tokyo is Japan's capital.", "category": "summarization", "output": "an older answer"}]
    path = write("dolly.jsonl", jsonl(*dolly))
    plain = run(db_url, "ingest", path, "-d", "dolly", "--json")
    assert plain.exit_code == 1
    assert (f"{path}:1: missing required field 'output' (this row has: context, response, category; map a column "
            "with --map output=COLUMN)") in plain.stderr
    mapped = run(db_url, "ingest", path, "-d", "dolly", "--map", "output=response,input=context", "--map",
                 "field=category", "--json")
    assert mapped.exit_code == 0, mapped.output
    shown = json.loads(run(db_url, "show", "dolly", "--json").stdout)
    assert {row["field"] for row in shown["groups"]} == {"open_qa", "summarization"}
    bad = run(db_url, "ingest", path, "-d", "dolly", "--map", "outptu=response")
    assert bad.exit_code == 2 and "'outptu' is not a record" in bad.output  # a usage error, in Typer's box


def test_map_keeps_a_replaced_key_as_metadata():
    from storage.ingest.types import RawRecord, SourceRecord
    from storage.ingest.validate import Validator, parse_columns

    columns = parse_columns(["output=response", " input = context "])
    assert columns == {"output": "response", "input": "context"}
    record = Validator(10_000, columns)(RawRecord("f", 1, {"instruction": "Q", "context": "C", "response": "R",
                                                           "output": "old"}))
    assert isinstance(record, SourceRecord)
    assert (record.input, record.output, record.meta) == ("C", "R", {"output_original": "old"})

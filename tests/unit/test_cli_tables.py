"""Listings at 80 and 200 columns and on a narrow terminal, through the real console script; --help shows
boolean flags as flags."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from cli.main import app
from reasongen.bootstrap import bootstrap
from reasongen.settings import Settings

REASONGEN = str(Path(sys.executable).with_name("reasongen"))


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """24 records (en/ja/zh) with fake drafts, the first 12 approved, one build."""
    from cli.demo import SAMPLE
    from review.bulk import bulk_decide
    from review.filters import parse_filter
    from storage.ingest import IngestOptions, ingest_file
    from storage.migrate import upgrade
    from workers.inprocess import run_here
    from workers.planning import BatchRequest, plan_batch

    folder = tmp_path_factory.mktemp("tables")
    url = f"sqlite:///{folder / 'rg.db'}"
    upgrade(url)
    wired = bootstrap(Settings(database_url=url, broker_url=None))
    try:
        ingest_file(wired.uow, SAMPLE, IngestOptions(dataset="demo"))
        run_here(wired, plan_batch(wired, BatchRequest(dataset="demo", backend="fake", chunk_size=8)).batch_id)
        bulk_decide(wired.uow, parse_filter("lang=en"), "approve", "t")
    finally:
        wired.close()
    return url


def run(url: str, columns: int, *args: str) -> str:
    env = {**os.environ, "REASONGEN_DATABASE_URL": url, "COLUMNS": str(columns)}
    env.pop("REASONGEN_BROKER_URL", None)
    result = subprocess.run([REASONGEN, *args], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _width_ok(text: str, columns: int) -> None:
    assert max(len(line.rstrip()) for line in text.splitlines()) <= columns


def test_review_list_keeps_whole_ids_at_80_columns_and_all_columns_at_200(demo_db):
    narrow = run(demo_db, 80, "review", "list", "--limit", "24")
    _width_ok(narrow, 80)
    ids = [line.split()[0] for line in narrow.splitlines()[3:] if line.strip()]
    assert ids == [str(i) for i in range(1, 25)]  # ids >= 10 whole, never "…"
    header = narrow.splitlines()[1].split()
    assert header[:3] == ["id", "status", "dataset/key"] and "response" in header  # v and field gave way
    assert "demo/zh-008" in narrow
    wide = run(demo_db, 200, "review", "list", "--limit", "24")
    assert wide.splitlines()[1].split() == ["id", "status", "v", "dataset/key", "lang", "field", "flags", "response"]
    assert "quality-engineering" in wide


def test_a_narrow_terminal_gets_one_block_per_row(demo_db):
    text = run(demo_db, 44, "review", "list", "--limit", "12")
    _width_ok(text, 44)
    assert "draft 12" in text and re.search(r"^dataset/key\s+demo/ja-004", text, re.M)


def test_status_at_80_and_200_columns(demo_db):
    narrow = run(demo_db, 80, "status")
    _width_ok(narrow, 80)
    assert narrow.splitlines()[0].split() == ["batch", "status", "done", "failed", "pending", "cost", "ETA"]
    assert narrow.splitlines()[2].split()[:5] == ["1", "done", "24", "0", "0"]
    wide = run(demo_db, 200, "status")
    assert wide.splitlines()[0].split() == ["batch", "kind", "status", "done", "failed", "pending", "chunks",
                                            "rec/min", "tokens", "cost", "ETA"]
    block = run(demo_db, 40, "status")
    assert "batch 1" in block and re.search(r"^pending\s+0\s*$", block, re.M)


def test_datasets_and_builds_at_80_columns(demo_db, tmp_path):
    text = run(demo_db, 80, "datasets")
    _width_ok(text, 80)
    assert re.search(r"^demo\s+24\s+en 8, ja 8, zh 8", text, re.M)
    assert run(demo_db, 80, "build-sft", "--dataset", "demo", "--out", str(tmp_path / "b"), "--formats",
               "prompt_completion")
    builds = run(demo_db, 80, "builds")
    _width_ok(builds, 80)
    assert builds.splitlines()[2].split()[:2] == ["1", "demo"]


def _commands(command, path=()):  # type: ignore[no-untyped-def]
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def test_every_help_shows_boolean_flags_as_flags():
    runner = CliRunner()
    paths = list(_commands(get_command(app)))
    assert ("review", "approve") in paths and ("rebuild",) in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "120"})
        assert result.exit_code == 0, (path, result.output)
        assert "<bool>" not in result.output, path
    rebuild = runner.invoke(app, ["rebuild", "--help"], env={"COLUMNS": "120"}).output
    assert re.search(r"--dry-run\s+List what would", rebuild)


def test_help_paragraphs_are_rewrapped_not_ragged():
    """Docstrings wrap at 120 columns in the source; at 80 columns the help must not keep those breaks."""
    from cli.errors import unwrap_help

    text = """First line
        continues here.

        - an item
        - another
          indented detail
        Last paragraph."""
    assert unwrap_help(text) == ("First line continues here.\n\n- an item\n- another\n  indented detail\n"
                                 "Last paragraph.")
    shown = CliRunner().invoke(app, ["ingest", "--help"], env={"COLUMNS": "80"}).output
    assert "question when missing), lang (en/ja/zh, detected when missing)" in shown

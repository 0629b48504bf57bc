"""Records with identical content (different ids) each end with their own current draft, and the model is
asked once: the others reuse the text through the cache (issue 10, item 1)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from cli.main import app
from reasongen.testing.openai_server import start_stub_server
from storage.models import Draft
from workers import monitor

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    monkeypatch.delenv("REASONGEN_BROKER_URL", raising=False)


def _ingest_twins(db_url: str, tmp_path, n_unique: int, copies: int) -> None:  # type: ignore[no-untyped-def]
    lines = [json.dumps({"id": f"q{i}-{c}", "lang": "en", "instruction": f"Question {i}?", "input": "",
                         "output": f"Answer {i}."})
             for i in range(n_unique) for c in range(copies)]
    path = tmp_path / "twins.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["--database-url", db_url, "ingest", str(path), "--dataset", "twins"])
    assert result.exit_code == 0, result.output


def _current_drafts(wired) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    with wired.uow() as uow:
        current = uow.session.scalar(select(func.count()).select_from(Draft).where(Draft.is_current.is_(True),
                                                                                 Draft.status != "failed"))
        shared = uow.session.scalar(select(func.count()).select_from(Draft).where(Draft.shared_from_id.is_not(None)))
    return int(current or 0), int(shared or 0)


@pytest.mark.parametrize("sub_batch", ["2", "16"])  # twins in the same sub-batch, and in different ones
def test_identical_records_each_get_a_draft_from_one_request(wired, db_url, tmp_path, monkeypatch, sub_batch):
    base_url, stub = start_stub_server()
    monkeypatch.setenv("OPENAI_BASE_URL", base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    try:
        _ingest_twins(db_url, tmp_path, n_unique=5, copies=3)
        result = runner.invoke(app, ["--database-url", db_url, "generate", "--dataset", "twins", "--backend",
                                     "teacher", "--sub-batch-size", sub_batch, "--json"])
        assert result.exit_code == 0, result.output
        assert stub.stats()["requests"] == 5  # one request per distinct content, not per record
        assert _current_drafts(wired) == (15, 10)
        summary = monitor.batch_summary(wired, json.loads(result.stdout)["batch"])
        assert summary["shared"] == 10 and summary["done"] == 15 and summary["failed"] == 0

        show = runner.invoke(app, ["--database-url", db_url, "rebuild", "--dataset", "twins", "--backend",
                                   "teacher", "--dry-run", "--json"])
        assert show.exit_code == 0, show.output
        assert json.loads(show.stdout)["records"] == []  # nothing left "never drafted"
        assert stub.stats()["requests"] == 5
    finally:
        stub.stop()


def test_a_twin_added_later_reuses_the_existing_draft(wired, db_url, tmp_path, monkeypatch):
    base_url, stub = start_stub_server()
    monkeypatch.setenv("OPENAI_BASE_URL", base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    try:
        _ingest_twins(db_url, tmp_path, n_unique=3, copies=1)
        assert runner.invoke(app, ["--database-url", db_url, "generate", "--dataset", "twins", "--backend",
                                   "teacher"]).exit_code == 0
        _ingest_twins(db_url, tmp_path, n_unique=3, copies=2)  # q*-1 are new records with the same content
        result = runner.invoke(app, ["--database-url", db_url, "rebuild", "--dataset", "twins", "--backend",
                                     "teacher"])
        assert result.exit_code == 0, result.output
        assert stub.stats()["requests"] == 3
        assert _current_drafts(wired) == (6, 3)
    finally:
        stub.stop()


def test_show_says_how_many_records_share_a_draft(wired, db_url, tmp_path):
    _ingest_twins(db_url, tmp_path, n_unique=2, copies=2)
    assert runner.invoke(app, ["--database-url", db_url, "generate", "--dataset", "twins", "--backend",
                               "fake"]).exit_code == 0
    shown = runner.invoke(app, ["--database-url", db_url, "show", "twins", "--json"])
    assert json.loads(shown.stdout)["stale"] == {"total": 0, "never_drafted": 0, "changed": 0, "shared": 2}
    text = runner.invoke(app, ["--database-url", db_url, "show", "twins"]).output
    assert "2 records share a draft" in text

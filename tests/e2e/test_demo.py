"""The offline demo walks the whole path: ingest, fake generation, review, build, train, plot."""

import sqlite3

import pytest
from typer.testing import CliRunner

from cli.main import app


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("REASONGEN_BROKER_URL", "redis://127.0.0.1:1/0")  # the demo must ignore it
    workdir = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--dir", str(workdir), "--steps", "4"])
    assert result.exit_code == 0, result.output
    assert "FAKE" in result.output
    png = (workdir / "loss.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert (workdir / "run" / "adapter_config.json").exists() or any((workdir / "run").rglob("adapter_config.json"))
    db = sqlite3.connect(workdir / "reasongen.db")
    assert db.execute("select count(*) from drafts where status='approved' and is_fake").fetchone()[0] == 24
    assert db.execute("select status from runs").fetchall() == [("completed",)]
    assert db.execute("select count(*) from run_metrics where split='train'").fetchone()[0] >= 2

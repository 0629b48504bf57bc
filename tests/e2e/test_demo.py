"""The offline demo walks the whole path unattended: ingest, fake generation judged by a fake judge and decided by
a policy, the follow-up held for review and released, build (with its dataset card), train, plot."""

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("REASONGEN_BROKER_URL", "redis://127.0.0.1:1/0")  # the demo must ignore it
    monkeypatch.chdir(tmp_path)
    workdir = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--dir", str(workdir), "--steps", "4"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "FAKE" in out and "policy: 19 approved, 0 rejected, 5 left for people" in out
    assert "waits for review: 5 draft(s) pending" in out and "reasongen release 1" in out
    assert "…" not in result.output  # the summary's paths fold at 80 columns, never cut short
    png = (workdir / "loss.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert any((workdir / "run").rglob("adapter_config.json"))
    db = sqlite3.connect(workdir / "reasongen.db")
    decided = dict(db.execute("select status, count(*) from drafts group by status").fetchall())
    assert decided == {"approved": 19, "pending": 5}
    assert db.execute("select count(distinct reviewer) from drafts where status='approved'").fetchone() == (1,)
    assert db.execute("select reviewer from drafts where status='approved' limit 1").fetchone()[0].startswith(
        "policy:demo@")
    # ja/zh drafts answer in (marked stand-in) English, never the Japanese reference copied
    ja = db.execute("select d.response from drafts d join records r on r.id = d.record_id "
                    "where r.lang = 'ja' and r.output glob '*[ぁ-ん]*' limit 1").fetchone()[0]
    assert ja.startswith("[stand-in translation]")
    assert db.execute("select status from runs").fetchall() == [("completed",)]
    assert db.execute("select count(*) from run_metrics where split='train'").fetchone()[0] >= 2
    (build_dir,) = db.execute("select out_dir from builds").fetchone()
    card = (Path(build_dir) / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n") and "`fake:fake-judge`" in card and "decided by: policy 19" in card

"""The build/train/runs/eval commands end to end on the tiny model (in-process: no broker)."""

import json

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.training.conftest import approve_all, make_rows
from training.config import TrainConfig
from training.train import create_run


def _cli(url: str, *args: str):  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(app, ["--database-url", url, *args], catch_exceptions=False)
    return result


@pytest.mark.slow
def test_build_train_runs_plot_eval_from_the_command_line(sqlite_wired, sqlite_url, tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REASONGEN_BROKER_URL", raising=False)
    approve_all(sqlite_wired, "ds", make_rows(9))
    built = _cli(sqlite_url, "build-sft", "--dataset", "ds", "--out", "b1", "--eval-fraction", "0.3", "--json")
    assert built.exit_code == 0, built.output
    build_id = json.loads(built.output)["build_id"]
    trained = _cli(sqlite_url, "train", "--build", str(build_id), "--base-model", tiny_model, "--max-steps", "4",
                   "--logging-steps", "2", "--batch-size", "4", "--lora-r", "4", "--target-modules", "q_proj,fc1",
                   "--json")
    assert trained.exit_code == 0, trained.output
    run = json.loads(trained.stdout)
    assert run["status"] == "completed" and run["step"] == 4 and run["tokens_per_s"] > 0
    listed = json.loads(_cli(sqlite_url, "runs", "--json").output)
    assert [r["id"] for r in listed] == [run["id"]]
    plotted = _cli(sqlite_url, "runs", "plot", str(run["id"]), "--out", "loss.png")
    assert plotted.exit_code == 0 and (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
    evaluated = _cli(sqlite_url, "eval", str(run["id"]), "--split", "train", "--limit", "2", "--max-new-tokens", "4")
    assert evaluated.exit_code == 0, evaluated.output
    shown = json.loads(_cli(sqlite_url, "eval", "show", str(run["id"]), "--json").output)
    assert len(shown) == 2 and all(s["adapter_output"] is not None for s in shown)
    table = _cli(sqlite_url, "eval", "show", str(run["id"]))
    assert "adapter" in table.output and table.exit_code == 0
    # A run that never finished (here: never started) is picked up by --resume instead of a new one.
    pending = create_run(sqlite_wired.uow, build_id, TrainConfig(base_model=tiny_model, max_steps=2, batch_size=4,
                                                                  output_dir=str(tmp_path / "pending")))
    resumed = _cli(sqlite_url, "train", "--build", str(build_id), "--resume", "--json")
    assert resumed.exit_code == 0 and json.loads(resumed.stdout)["id"] == pending
    assert json.loads(resumed.stdout)["status"] == "completed"


def test_clear_errors(sqlite_url, tmp_path):
    assert "No build with id 7" in _cli(sqlite_url, "train", "--build", "7").output
    both = _cli(sqlite_url, "train", "--build", "7", "--epochs", "1", "--max-steps", "3")
    assert both.exit_code == 2 and "exclude each other" in both.output
    assert "No dataset named 'x'" in _cli(sqlite_url, "build-sft", "--dataset", "x", "--out", str(tmp_path)).output
    assert "No run with id 3" in _cli(sqlite_url, "eval", "show", "3").output
    assert "No build with id 1" in _cli(sqlite_url, "train", "--build", "1", "--resume").output


# -- what a user sees ------------------------------------------------------------------------------------------

import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

REASONGEN = str(Path(sys.executable).with_name("reasongen"))


def _run(url: str, *args: str, cwd: Path, prelude: str | None = None, columns: int = 80):  # type: ignore[no-untyped-def]
    env = {**os.environ, "REASONGEN_DATABASE_URL": url, "COLUMNS": str(columns)}
    for name in ("REASONGEN_BROKER_URL", "REASONGEN_DEBUG", "PYTHONWARNINGS"):
        env.pop(name, None)
    cmd = ([sys.executable, "-c", f"{prelude}\nfrom cli.main import app\napp(prog_name='reasongen')", *args]
           if prelude else [REASONGEN, *args])
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_build_summary_is_a_table_with_notes_and_the_manifest_says_which_drafts_are_fake(
        sqlite_wired, sqlite_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    approve_all(sqlite_wired, "ds", make_rows(6))
    with sqlite_wired.uow() as uow:  # a reviewer approved one draft despite a check flag
        from sqlalchemy import update

        from storage.models import Draft

        first = min(d for (d,) in uow.session.execute(Draft.__table__.select().with_only_columns(Draft.id)))
        uow.session.execute(update(Draft).where(Draft.id == first).values(flags=["too_short"]))
        uow.commit()
    built = _cli(sqlite_url, "build-sft", "--dataset", "ds", "--out", "b1", "--eval-fraction", "0")
    assert built.exit_code == 0, built.output
    assert "{" not in built.stdout  # counts as a table, not a Python dict
    assert any(line.split()[:2] == ["train", "6"] for line in built.stdout.splitlines())
    assert "the eval split is empty" in built.stdout and "--split train" in built.stdout
    assert "6 drafts came from the FAKE backend" in built.stdout
    manifest = json.loads((tmp_path / "b1" / "manifest.json").read_text())
    assert len(manifest["drafts"]["fake_draft_ids"]) == 6
    assert manifest["drafts"]["flagged_drafts"] == {str(first): ["too_short"]}
    listed = _cli(sqlite_url, "builds")
    assert any(line.split()[:2] == ["1", "ds"] for line in listed.stdout.splitlines())  # the name, not the id


def test_build_sft_on_a_core_install_skips_the_datasets_format_with_a_note(sqlite_wired, sqlite_url, tmp_path):
    approve_all(sqlite_wired, "ds", make_rows(6))
    blocked = "import sys\nsys.modules['datasets'] = None  # as on a core install: not importable"
    result = _run(sqlite_url, "build-sft", "--dataset", "ds", "--out", "b1", cwd=tmp_path, prelude=blocked)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    note = " ".join(result.stdout.split())
    assert "format hf_dataset skipped: needs datasets, from the 'train' extra" in note
    assert (tmp_path / "b1" / "prompt_completion" / "train.jsonl").is_file()
    assert not (tmp_path / "b1" / "hf_dataset").exists()
    manifest = json.loads((tmp_path / "b1" / "manifest.json").read_text())
    assert "hf_dataset" not in manifest["params"]["formats"] and "hf_dataset" in manifest["params"]["skipped_formats"]


@pytest.mark.slow
def test_train_and_eval_show_no_library_warnings_and_an_empty_eval_split_points_to_train(
        sqlite_wired, sqlite_url, tiny_model, tmp_path):
    approve_all(sqlite_wired, "ds", make_rows(6))
    assert _run(sqlite_url, "build-sft", "--dataset", "ds", "--out", "b1", "--eval-fraction", "0",
                cwd=tmp_path).returncode == 0
    trained = _run(sqlite_url, "train", "--build", "1", "--base-model", tiny_model, "--max-steps", "2",
                   "--logging-steps", "1", "--batch-size", "2", "--lora-r", "4", "--target-modules", "q_proj",
                   cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert trained.stderr.strip() == ""  # e.g. no "`is_gradient_checkpointing` is deprecated"
    assert "completed" in trained.stdout
    empty = _run(sqlite_url, "eval", "1", cwd=tmp_path)
    assert empty.returncode == 2 and "reasongen eval 1 --split train" in empty.stderr
    evaluated = _run(sqlite_url, "eval", "1", "--split", "train", "--limit", "1", "--max-new-tokens", "2",
                     cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert evaluated.stderr.strip() == ""

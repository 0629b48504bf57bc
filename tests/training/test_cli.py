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

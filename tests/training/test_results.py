"""After training: the adapter reloads and generates side by side with the base; loss plots."""

import pytest

from tests.training.conftest import tiny_config
from training.evaluate import evaluate_run, prompts_from_file
from training.plots import plot_runs
from training.train import create_run, execute_run


@pytest.fixture
def trained(sqlite_wired, repeated_build, tiny_model, tmp_path):
    cfg = tiny_config(tiny_model, tmp_path, max_steps=10, logging_steps=2)
    run_id = create_run(sqlite_wired.uow, repeated_build.build_id, cfg)
    execute_run(sqlite_wired.uow, run_id)
    return run_id


@pytest.mark.slow
def test_adapter_reloads_and_generates_next_to_the_base_model(sqlite_wired, trained, repeated_build):
    n = evaluate_run(sqlite_wired.uow, trained, split="train", limit=2, max_new_tokens=6)
    with sqlite_wired.uow() as uow:
        samples = uow.runs.eval_samples(trained)
        assert n == len(samples) == 2
        keys = [k for k, _ in repeated_build.manifest["splits"]["train"][:2]]
        assert [s.record_key for s in samples] == keys
        assert all(s.adapter_output and s.base_output and s.reference for s in samples)
        # A trained adapter changes what the model says (LoRA B starts at zero, so an untrained one would not).
        assert any(s.adapter_output != s.base_output for s in samples)


def test_prompts_file_errors_name_the_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a"}\n\n{"prompt": 3}\n')
    with pytest.raises(ValueError, match=r"p.jsonl:3: expected an object"):
        prompts_from_file(path)
    path.write_text('{"prompt": "a", "key": "k"}\nnot json\n')
    with pytest.raises(ValueError, match=r"p.jsonl:2: not valid JSON"):
        prompts_from_file(path)


def test_plot_is_a_png_with_one_curve_per_run_and_split(sqlite_wired, repeated_build, tmp_path):
    with sqlite_wired.uow() as uow:
        runs = [uow.runs.add(repeated_build.build_id, "m", {}) for _ in range(2)]
        for run in runs:
            for step in (1, 2, 3):
                uow.runs.add_metric(run.id, "train", step, 3.0 / step)
            uow.runs.add_metric(run.id, "eval", 3, 1.5)
        uow.commit()
        ids = [r.id for r in runs]
    fig = plot_runs(sqlite_wired.uow, ids, tmp_path / "loss.png")
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = fig.axes[0].get_lines()
    labels = sorted(line.get_label() for line in lines)
    assert labels == sorted(f"run {i} (build {repeated_build.build_id}) {s}" for i in ids for s in ("train", "eval"))
    styles = {line.get_label(): line.get_linestyle() for line in lines}
    assert styles[f"run {ids[0]} (build {repeated_build.build_id}) eval"] == "--"
    assert list(lines[0].get_ydata()) == [3.0, 1.5, 1.0]


def test_metrics_upsert_on_both_databases(wired, tmp_path):
    from tests.training.conftest import approve_all, make_rows
    from training.build import BuildOptions, build_sft
    from training.callbacks import DbMetricsCallback

    approve_all(wired, "ds", make_rows(3))
    build = build_sft(wired.uow, BuildOptions("ds", out_dir=str(tmp_path / "b")))
    with wired.uow() as uow:
        run_id = uow.runs.add(build.build_id, "m", {}).id
        uow.commit()

    class State:
        global_step, is_world_process_zero = 4, True

    callback = DbMetricsCallback(wired.uow, run_id)
    callback.on_log(None, State, None, logs={"loss": 2.0, "learning_rate": 1e-3, "epoch": 0.5})
    callback.on_log(None, State, None, logs={"eval_loss": 2.5})
    callback.on_log(None, State, None, logs={"loss": 1.5})  # the same step logged again after a resume
    callback.on_log(None, State, None, logs={"train_runtime": 3.0})
    with wired.uow() as uow:
        points = [(m.split, m.step, m.loss) for m in uow.runs.metrics(run_id)]
    assert points == [("eval", 4, 2.5), ("train", 4, 1.5)]

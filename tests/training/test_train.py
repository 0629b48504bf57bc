import json
from pathlib import Path

import pytest

from tests.training.conftest import tiny_config
from training.train import RUN_INFO, create_run, execute_run


@pytest.mark.slow
def test_loss_falls_metrics_are_stored_and_output_folder_is_complete(sqlite_wired, repeated_build, tiny_model, tmp_path):
    run_id = create_run(sqlite_wired.uow, repeated_build.build_id, tiny_config(tiny_model, tmp_path))
    outcome = execute_run(sqlite_wired.uow, run_id)
    with sqlite_wired.uow() as uow:
        run = uow.runs.get(run_id)
        train = [m.loss for m in uow.runs.metrics(run_id, "train")]
        steps = [m.step for m in uow.runs.metrics(run_id, "eval")]
        assert run.status == "completed" and run.tokens_per_s and run.tokens_per_s > 0
        assert run.final_eval_loss == pytest.approx(outcome.final_eval_loss)
    assert len(train) == 6 and train[-1] < train[0] * 0.7, train
    assert steps[:6] == [5, 10, 15, 20, 25, 30]
    out = Path(outcome.output_dir)
    assert (out / "adapter_model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    info = json.loads((out / RUN_INFO).read_text())
    assert info["manifest_sha256"] == repeated_build.manifest_sha256 and info["reasongen_version"] == "0.1.0"
    assert info["config"]["target_modules"] == ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"]
    with sqlite_wired.uow() as uow:
        finished = uow.runs.get(run_id).finished_at
    again = execute_run(sqlite_wired.uow, run_id)  # a redelivered task: nothing is trained twice
    with sqlite_wired.uow() as uow:
        assert uow.runs.get(run_id).finished_at == finished
    assert (again.global_step, again.final_eval_loss) == (30, outcome.final_eval_loss)


def _lora_targets(model) -> list[str]:
    return sorted(name.rsplit(".", 1)[0] for name, _ in model.named_modules() if name.endswith(".lora_A"))


@pytest.mark.parametrize("targets", [None, ["q_proj", "fc2"]])
def test_lora_modules_are_exactly_the_configured_ones(repeated_build, tiny_model, tmp_path, targets):
    from training.config import PHI2_TARGET_MODULES
    from training.sft import make_trainer

    cfg = tiny_config(tiny_model, tmp_path, **({"target_modules": targets} if targets else {}))
    trainer = make_trainer(cfg, repeated_build.out_dir, tmp_path / "run", [])
    wanted = targets or PHI2_TARGET_MODULES
    found = _lora_targets(trainer.model)
    assert sorted({n.rsplit(".", 1)[1] for n in found}) == sorted(wanted)
    assert len(found) == 2 * len(wanted)  # every one of the 2 layers
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_prompt_tokens_are_masked_from_the_loss(repeated_build, tiny_model, tmp_path):
    from training.sft import load_tokenizer, make_trainer

    trainer = make_trainer(tiny_config(tiny_model, tmp_path), repeated_build.out_dir, tmp_path / "run", [])
    tok = load_tokenizer(tiny_model)
    rows = [json.loads(x) for x in (repeated_build.out_dir / "prompt_completion/train.jsonl").read_text().splitlines()]
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    for i, row in enumerate(rows[:2]):
        n_prompt = len(tok(row["prompt"])["input_ids"])
        ids, labels = batch["input_ids"][i], batch["labels"][i]
        real = int(batch["attention_mask"][i].sum())
        assert (labels[:n_prompt] == -100).all()
        assert (labels[n_prompt:real] == ids[n_prompt:real]).all()
        assert (labels[real:] == -100).all()
        assert ids[real - 1] == tok.eos_token_id  # the completion ends with EOS, which is learnt
        assert tok.decode(ids[n_prompt:real - 1]) == row["completion"]

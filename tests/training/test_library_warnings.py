"""Training and evaluating print no checkpointing deprecation warning (transformers 5.23 renamed gradient to
activation checkpointing; peft still asks for the old name when it wraps a model). The CLI hides library
warnings anyway (training/launch.py); these call the library code directly, as the worker and benches do."""

from __future__ import annotations

import warnings

from tests.training.conftest import tiny_config


def checkpointing_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if "checkpointing" in str(w.message)]


def test_a_trainer_and_a_reloaded_adapter_warn_nothing_about_checkpointing(repeated_build, tiny_model, tmp_path):
    from training.evaluate import generate_pairs
    from training.sft import make_trainer

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = make_trainer(tiny_config(tiny_model, tmp_path), repeated_build.out_dir, tmp_path / "run", [])
    assert checkpointing_warnings(caught) == []
    assert trainer.args.activation_checkpointing is False  # on CPU; the new name, set by us, not the default
    adapter = tmp_path / "adapter"
    trainer.model.save_pretrained(adapter)  # untrained LoRA: enough to load it back
    trainer.processing_class.save_pretrained(adapter)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pairs = generate_pairs(tiny_model, str(adapter), [{"prompt": "What is SFT?"}], max_new_tokens=2)
    assert checkpointing_warnings(caught) == []
    assert len(pairs) == 1 and "adapter_output" in pairs[0]

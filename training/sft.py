"""The pieces of one SFT run: model, tokenizer, LoRA, TRL config, datasets, trainer.

Prompt/completion data makes TRL mask the prompt tokens (completion_only_loss), so the loss falls on
the reasoning, the transformed input and the answer only.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from training.config import TrainConfig

if TYPE_CHECKING:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback
    from trl.trainer.sft_config import SFTConfig
    from trl.trainer.sft_trainer import SFTTrainer


def use_gpu(cfg: TrainConfig) -> bool:
    import torch

    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda was asked for but no CUDA device is available")
    return cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())


def load_tokenizer(path: str) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(path: str, gpu: bool) -> PreTrainedModel:
    import torch
    from transformers import AutoModelForCausalLM

    # bf16 on a GPU; float32 on CPU, where bf16 matmuls are slow and lossy.
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16 if gpu else torch.float32)


def lora_config(cfg: TrainConfig) -> LoraConfig:
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.target_modules), bias="none", task_type="CAUSAL_LM")


@contextlib.contextmanager
def peft_wrapping() -> Iterator[None]:
    """While peft wraps a model (a trainer given a LoRA config, an adapter loaded): peft (0.21, the newest) asks
    the model for ``is_gradient_checkpointing``, which transformers 5.23 deprecated for
    ``is_activation_checkpointing``, so every train and eval printed a FutureWarning the user cannot act on.
    The call is peft's, not ours (our own argument is ``activation_checkpointing`` already), so only that one
    warning is ignored, and only here; `quiet_libraries` hides the rest on the command line."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def sft_config(cfg: TrainConfig, output_dir: Path, has_eval: bool, gpu: bool) -> SFTConfig:
    # trl's lazy top-level module hides its exports from a checker; the submodule holds the same class.
    from trl.trainer.sft_config import SFTConfig

    # Only the keys that apply are passed, the rest keep the TrainingArguments defaults.
    steps: dict[str, Any] = {"max_steps": cfg.max_steps} if cfg.max_steps else {"num_train_epochs": cfg.epochs}
    evals: dict[str, Any] = (
        {"eval_strategy": "steps", "eval_steps": cfg.eval_steps or cfg.logging_steps} if has_eval else {})
    return SFTConfig(
        output_dir=str(output_dir), learning_rate=cfg.learning_rate, per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.grad_accum,
        logging_steps=cfg.logging_steps, save_strategy="steps", save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit, seed=cfg.seed, max_length=cfg.max_length,
        completion_only_loss=True, bf16=gpu, fp16=False, activation_checkpointing=gpu, use_cpu=not gpu,
        include_num_input_tokens_seen="non_padding", report_to=[], disable_tqdm=True,
        dataloader_num_workers=0, **steps, **evals,
    )


def read_split(build_dir: Path, split: str) -> Dataset | None:
    """The build's prompt/completion split as a `datasets.Dataset` (None when empty or absent)."""
    from datasets import Dataset

    path = Path(build_dir) / "prompt_completion" / f"{split}.jsonl"
    if not path.is_file():
        return None
    rows = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    return Dataset.from_list(rows) if rows else None


def make_trainer(cfg: TrainConfig, build_dir: Path, output_dir: Path,
                 callbacks: list[TrainerCallback]) -> SFTTrainer:
    gpu = use_gpu(cfg)
    train, evaluation = read_split(build_dir, "train"), read_split(build_dir, "eval")
    if train is None:
        raise ValueError(f"Build folder {build_dir} has no training examples (prompt_completion/train.jsonl)")
    model, tokenizer = load_model(cfg.base_model, gpu), load_tokenizer(cfg.base_model)
    return trainer_for(cfg, model, tokenizer, train, evaluation, output_dir, callbacks, gpu)


def trainer_for(cfg: TrainConfig, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, train: Dataset,
                evaluation: Dataset | None, output_dir: Path, callbacks: list[TrainerCallback],
                gpu: bool) -> SFTTrainer:
    """The SFTTrainer over given objects (the benches pass a model built in memory)."""
    from trl.trainer.sft_trainer import SFTTrainer

    with peft_wrapping():
        return SFTTrainer(
            model=model, args=sft_config(cfg, output_dir, evaluation is not None, gpu), train_dataset=train,
            eval_dataset=evaluation, processing_class=tokenizer, peft_config=lora_config(cfg), callbacks=callbacks,
        )


_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def last_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint; a kill can leave a half-written one without trainer_state.json."""
    if not output_dir.is_dir():
        return None
    done: dict[Path, int] = {}
    for p in output_dir.iterdir():
        if (match := _CHECKPOINT.match(p.name)) and (p / "trainer_state.json").is_file():
            done[p] = int(match.group(1))
    return max(done, key=done.__getitem__, default=None)

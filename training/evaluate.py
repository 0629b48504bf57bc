"""Side-by-side answers: the base model and the adapter generate for the same prompts; stored per run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from reasongen.errors import Conflict, InvalidInput
from storage.uow import UnitOfWork
from training.manifest import MANIFEST_NAME

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedTokenizerBase


def prompts_from_file(path: Path) -> list[dict[str, Any]]:
    """JSONL, one object per line with "prompt" (and optionally "reference", "key")."""
    out = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
            raise ValueError(f'{path}:{number}: expected an object with a "prompt" string')
        out.append({"prompt": row["prompt"], "reference": row.get("reference"), "record_key": row.get("key")})
    return out


def prompts_from_build(build_dir: Path, split: str) -> list[dict[str, Any]]:
    """The build's split, in file order; the manifest names each line's record key."""
    path = build_dir / "prompt_completion" / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; was the build written with the prompt_completion format?")
    keys = [k for k, _ in json.loads((build_dir / MANIFEST_NAME).read_text(encoding="utf-8"))["splits"][split]]
    rows = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    return [{"prompt": r["prompt"], "reference": r["completion"], "record_key": k} for r, k in zip(rows, keys)]


def _generate(model: PeftModel, tok: PreTrainedTokenizerBase, prompt: str, max_new_tokens: int) -> str:
    import torch

    encoded = tok(prompt, return_tensors="pt").to(model.device)
    with torch.no_grad():
        out = model.generate(  # type: ignore[no-untyped-call]  # peft leaves generate unannotated
            **encoded, max_new_tokens=max_new_tokens, do_sample=False,
            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    text = tok.decode(out[0, encoded["input_ids"].shape[1]:], skip_special_tokens=True)
    assert isinstance(text, str)  # one sequence decodes to one string (a batch would give a list)
    return text


def generate_pairs(base_model: str, adapter_dir: str, prompts: list[dict[str, Any]],
                   max_new_tokens: int) -> list[dict[str, Any]]:
    """One base model in memory; the adapter is switched off for the base answer."""
    from peft import PeftModel

    from training.sft import load_model, load_tokenizer, peft_wrapping

    tok = load_tokenizer(adapter_dir)
    with peft_wrapping():
        model = PeftModel.from_pretrained(load_model(base_model, gpu=_gpu()), adapter_dir).eval()
    if _gpu():
        model = model.to("cuda")
    samples: list[dict[str, Any]] = []
    for p in prompts:
        with model.disable_adapter():
            base = _generate(model, tok, p["prompt"], max_new_tokens)
        samples.append({**p, "base_output": base, "adapter_output": _generate(model, tok, p["prompt"], max_new_tokens)})
    return samples


def _gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def evaluate_run(uow_factory: Callable[[], UnitOfWork], run_id: int, *, prompts_file: str | None = None,
                 split: str = "eval", limit: int | None = 10, max_new_tokens: int = 256) -> int:
    with uow_factory() as uow:
        run = uow.runs.get(run_id)
        if run.status != "completed":
            raise Conflict(f"Run {run_id} is {run.status}; evaluate a completed run (see: reasongen runs)")
        base_model, adapter_dir, build_id = run.base_model, run.output_dir, run.build_id
        build_dir = Path(uow.builds.get(run.build_id).out_dir)
    prompts = prompts_from_file(Path(prompts_file)) if prompts_file else prompts_from_build(build_dir, split)
    if not prompts:
        hint = f"; use the train split: reasongen eval {run_id} --split train" if split == "eval" else ""
        raise InvalidInput(f"no prompts to evaluate: {prompts_file or f'the {split} split of build {build_id}'} "
                           f"is empty{hint if not prompts_file else ''}")
    samples = generate_pairs(base_model, adapter_dir, prompts[:limit] if limit else prompts, max_new_tokens)
    with uow_factory() as uow:
        uow.runs.replace_eval_samples(run_id, samples)
        uow.commit()
    return len(samples)

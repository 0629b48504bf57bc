"""The local backend: a causal LM through transformers (default microsoft/phi-2), batched on one device.

torch and transformers are imported here only, so a teacher-only worker never loads them. The model
is loaded once per process, on first use. Prompts are sorted by length and padded on the left so each
batch wastes little; results come back in the caller's order. A CUDA out-of-memory halves the batch
size (for the rest of the process) and retries. A base model does not reliably follow a schema, so
the reply is parsed tolerantly (JSON or labelled sections).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from generation.backends.base import Prompt
from generation.parse import ParseError, parse_draft
from generation.records import DraftResult

log = logging.getLogger(__name__)

_LOADED: dict[tuple[str, str, str], tuple[Any, Any]] = {}
_LOAD_LOCK = threading.Lock()


def load_model(source: str, device: str, dtype: torch.dtype) -> tuple[Any, Any]:
    """(model, tokenizer) for a hub id or a local path, loaded once per process."""
    key = (source, device, str(dtype))
    with _LOAD_LOCK:
        if key not in _LOADED:
            log.info("loading %s on %s as %s", source, device, dtype)
            tokenizer = AutoTokenizer.from_pretrained(source)
            tokenizer.padding_side = "left"
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype).to(device).eval()  # type: ignore[arg-type]
            _LOADED[key] = (model, tokenizer)
        return _LOADED[key]


def default_device() -> tuple[str, torch.dtype]:
    return ("cuda", torch.bfloat16) if torch.cuda.is_available() else ("cpu", torch.float32)


class LocalBackend:
    name = "local"
    is_fake = False

    def __init__(self, model: str = "microsoft/phi-2", *, batch_size: int = 8, max_new_tokens: int = 512,
                 temperature: float = 0.0, top_p: float = 1.0, seed: int = 0, device: str | None = None):
        self.model, self.batch_size, self.max_new_tokens = model, batch_size, max_new_tokens
        self.temperature, self.top_p, self.seed = temperature, top_p, seed
        self.device, self.dtype = (device, torch.float32 if device == "cpu" else torch.bfloat16) if device \
            else default_device()

    @classmethod
    def from_settings(cls, settings: Any, model: str | None = None, **options: Any) -> "LocalBackend":
        options.setdefault("batch_size", settings.local_batch_size)
        return cls(model or settings.local_model, **options)

    @property
    def preferred_sub_batch(self) -> int:
        return self.batch_size * 4

    def cache_params(self) -> dict[str, Any]:
        sampling = {"temperature": self.temperature, "top_p": self.top_p, "seed": self.seed}
        return {"max_new_tokens": self.max_new_tokens, **(sampling if self.temperature > 0 else {"greedy": True})}

    def generate(self, prompts: Sequence[Prompt]) -> list[DraftResult]:
        texts = [self.flatten(p) for p in prompts]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        results: dict[int, DraftResult] = {}
        start = 0
        while start < len(order):
            batch = order[start : start + self.batch_size]
            replies = self._generate_or_shrink([texts[i] for i in batch])
            if replies is None:
                continue  # batch size was halved: retry the same prompts in smaller groups
            results.update(zip(batch, replies))
            start += len(batch)
        return [results[i] for i in range(len(texts))]

    def flatten(self, prompt: Prompt) -> str:
        """Chat template when the tokenizer has one, else Phi-2's "Instruct: ... Output:" format."""
        _, tokenizer = self._loaded()
        if getattr(tokenizer, "chat_template", None):
            messages = [{"role": "system", "content": prompt.system}, {"role": "user", "content": prompt.user}]
            return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        return f"Instruct: {prompt.system}\n\n{prompt.user}\nOutput:"

    def _loaded(self) -> tuple[Any, Any]:
        return load_model(self.model, self.device, self.dtype)

    def _generate_or_shrink(self, texts: list[str]) -> list[DraftResult] | None:
        try:
            return self._run_batch(texts)
        except torch.OutOfMemoryError:
            if self.batch_size == 1:
                return [DraftResult(error="out of memory even at batch size 1", finish_reason="error") for _ in texts]
            self.batch_size = max(1, self.batch_size // 2)
            log.warning("out of memory: batch size halved to %d", self.batch_size)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            return None

    def _run_batch(self, texts: list[str]) -> list[DraftResult]:
        model, tokenizer = self._loaded()
        inputs = tokenizer(texts, return_tensors="pt", padding=True).to(self.device)
        started = time.monotonic()
        with torch.inference_mode():
            output = model.generate(**inputs, **self._sampling(tokenizer))
        new_tokens = output[:, inputs["input_ids"].shape[1] :]  # left padding: the prompt ends at one column
        elapsed = (time.monotonic() - started) / len(texts)
        prompt_lengths = inputs["attention_mask"].sum(dim=1).tolist()
        return [self._result(tokenizer, row, n, elapsed) for row, n in zip(new_tokens, prompt_lengths)]

    def _sampling(self, tokenizer: Any) -> dict[str, Any]:
        args = dict(max_new_tokens=self.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id)
        if self.temperature <= 0:
            return {**args, "do_sample": False}
        torch.manual_seed(self.seed)
        return {**args, "do_sample": True, "temperature": self.temperature, "top_p": self.top_p}

    def _result(self, tokenizer: Any, row: Any, prompt_tokens: int, latency: float) -> DraftResult:
        ids = row.tolist()
        ended = tokenizer.eos_token_id in ids
        generated = ids[: ids.index(tokenizer.eos_token_id)] if ended else ids
        text = tokenizer.decode(generated, skip_special_tokens=True).strip()
        common: dict[str, Any] = dict(
            raw_text=text, prompt_tokens=int(prompt_tokens), completion_tokens=len(generated), latency_s=latency,
            finish_reason="stop" if ended else "length")
        try:
            fields = parse_draft(text)
        except ParseError as exc:
            return DraftResult(error=f"could not read the model's reply: {exc}", **common)
        values: dict[str, Any] = {**fields, **common}
        return DraftResult(**values, flags=[] if ended else ["truncated"])

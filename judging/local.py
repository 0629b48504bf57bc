"""The judge on a local model (transformers, e.g. Phi-2 on a GPU): the local generation backend, reading its
reply as a judgement. A small base model often writes prose around its JSON, so the first JSON object in the
reply is taken; a reply without one (or with a bad score) is a failed judgement that decides nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from generation.backends.local import LocalBackend
from generation.records import DraftResult
from judging.judges import JudgeResult, from_reply
from judging.rubric import JudgePrompt


class _LocalJudgeModel(LocalBackend):
    def _result(self, tokenizer: Any, row: Any, prompt_tokens: int, latency: float) -> DraftResult:
        # The local backend keeps the decoded text as raw_text whether or not it reads as a draft.
        found = super()._result(tokenizer, row, prompt_tokens, latency)
        return DraftResult(response=found.raw_text, raw_text=found.raw_text, prompt_tokens=found.prompt_tokens,
                           completion_tokens=found.completion_tokens, latency_s=found.latency_s,
                           finish_reason=found.finish_reason)


class LocalJudge:
    name = "local"
    is_fake = False

    def __init__(self, transport: LocalBackend):
        self.transport = transport
        self.model = transport.model

    @classmethod
    def from_settings(cls, settings: Any, model: str | None = None, **options: Any) -> "LocalJudge":
        options.setdefault("temperature", 0.0)
        return cls(_LocalJudgeModel.from_settings(settings, model=model, **options))

    @property
    def preferred_sub_batch(self) -> int:
        return int(self.transport.preferred_sub_batch)

    def cache_params(self) -> dict[str, Any]:
        return dict(self.transport.cache_params())

    def judge(self, prompts: Sequence[JudgePrompt]) -> list[JudgeResult]:
        replies = self.transport.generate([p.prompt for p in prompts])
        return [from_reply(p, r, embedded=True) for p, r in zip(prompts, replies, strict=True)]

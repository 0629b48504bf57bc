"""A deterministic, offline backend for demos and for testing everything downstream.

Its drafts are marked fake (``is_fake``) wherever they appear.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from generation.backends.base import Prompt
from generation.records import DraftResult
from generation.restructure import translation_directive


class FakeBackend:
    name = "fake"
    is_fake = True

    def __init__(self, model: str = "fake-teacher", fail_keys: Sequence[str] = ()):
        self.model = model
        self.fail_keys = set(fail_keys)

    @classmethod
    def from_settings(cls, settings: Any, model: str | None = None, **options: Any) -> "FakeBackend":
        return cls(model=model or "fake-teacher", **options)

    def cache_params(self) -> dict[str, Any]:
        return {}

    def generate(self, prompts: Sequence[Prompt]) -> list[DraftResult]:
        return [self._one(p) for p in prompts]

    def _one(self, prompt: Prompt) -> DraftResult:
        view = prompt.view
        if view.key in self.fail_keys:
            return DraftResult(error="fake failure requested for this record", raw_text="", finish_reason="error")
        tag = hashlib.sha256(prompt.user.encode()).hexdigest()[:8]
        opening = f"{translation_directive(view.lang)} " if view.lang != "en" else ""
        transformed = view.input if view.lang == "en" else f"[fake English rendering of {view.lang} input {tag}]"
        reasoning = (
            f"{opening}The question asks: {view.instruction.strip()} "
            f"Working from the input and the reference answer, the answer follows in a few steps. [fake {tag}]"
        )
        return DraftResult(
            transformed_input=transformed, reasoning=reasoning, response=view.reference_output,
            raw_text=f"fake:{tag}", finish_reason="stop",
            prompt_tokens=len(prompt.user) // 4, completion_tokens=len(reasoning) // 4,
        )

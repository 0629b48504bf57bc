"""A deterministic, offline backend for demos and for testing everything downstream.

Its drafts are marked fake (``is_fake``) wherever they appear. For ja/zh records it still shows the seed's
point, read the native text and answer in English: it cannot translate, so the English rendering and the
English response are visibly marked stand-ins ("[stand-in translation]") that keep the reference's numbers.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

from generation.backends.base import Prompt
from generation.records import DraftResult
from generation.restructure import LANGUAGE_NAMES, translation_directive
from generation.tokens import count_tokens, prompt_tokens


class FakeBackend:
    name = "fake"
    is_fake = True

    def __init__(self, model: str = "fake-teacher", fail_keys: Sequence[str] = (), copy_reference: bool = False):
        self.model = model
        self.fail_keys = set(fail_keys)
        self.copy_reference = copy_reference  # the old behaviour: answer in the reference's own language

    @classmethod
    def from_settings(cls, settings: Any, model: str | None = None, **options: Any) -> "FakeBackend":
        return cls(model=model or "fake-teacher", **options)

    def cache_params(self) -> dict[str, Any]:
        return {"copy_reference": True} if self.copy_reference else {}

    def generate(self, prompts: Sequence[Prompt]) -> list[DraftResult]:
        return [self._one(p) for p in prompts]

    def _one(self, prompt: Prompt) -> DraftResult:
        view = prompt.view
        if view.key in self.fail_keys:
            return DraftResult(error="fake failure requested for this record", raw_text="", finish_reason="error")
        tag = hashlib.sha256(prompt.user.encode()).hexdigest()[:8]
        opening = f"{translation_directive(view.lang)} " if view.lang != "en" else ""
        transformed = view.input if view.lang == "en" else _stand_in(view.lang, view.input, "input")
        response = view.reference_output
        if view.lang != "en" and _CJK.search(response) and not self.copy_reference:
            response = _stand_in(view.lang, response, "answer")
        reasoning = (
            f"{opening}The question asks: {view.instruction.strip()} "
            f"Working from the input and the reference answer, the answer follows in a few steps. [fake {tag}]"
        )
        return DraftResult(
            transformed_input=transformed, reasoning=reasoning, response=response,
            raw_text=f"fake:{tag}", finish_reason="stop",
            prompt_tokens=prompt_tokens(prompt),
            completion_tokens=count_tokens(transformed) + count_tokens(reasoning) + count_tokens(view.reference_output),
        )


STAND_IN = "[stand-in translation]"
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _stand_in(lang: str, text: str, what: str) -> str:
    """An English placeholder for text the fake cannot translate: marked, and keeping the text's numbers."""
    numbers = _NUMBER.findall(text)
    kept = f" Figures: {', '.join(numbers)}." if numbers else ""
    return f"{STAND_IN} The {LANGUAGE_NAMES.get(lang, lang)} {what} in English.{kept}"

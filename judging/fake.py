"""A deterministic, offline judge that scores by simple checks (for the demo and for tests downstream).

It cannot read meaning; it checks what can be checked without a model:
- translation_fidelity: an English rendering exists and holds no CJK text; a marked stand-in translation
  (the fake teacher's) is only "acceptable" (3), never good.
- reasoning_soundness: long enough; a ja/zh reasoning opens with the translation directive.
- answer_english_consistent: the response is English and keeps every number the reference states.
- keeps_viewpoint: the response shares the reference's own words (a stand-in translation cannot: 3).
A ``[[judge:N]]`` marker in the record's instruction forces every score to N (tests, demos).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from generation.restructure import translation_directive
from generation.tokens import prompt_tokens
from judging.judges import JudgeResult
from judging.rubric import JudgePrompt

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_WORD = re.compile(r"[a-z]{4,}")
_FORCE = re.compile(r"\[\[judge:(\d+)\]\]")
STAND_IN = "[stand-in translation]"


class FakeJudge:
    name = "fake"
    is_fake = True

    def __init__(self, model: str = "fake-judge"):
        self.model = model

    @classmethod
    def from_settings(cls, settings: Any, model: str | None = None, **options: Any) -> "FakeJudge":
        return cls(model=model or "fake-judge")

    def cache_params(self) -> dict[str, Any]:
        return {"checks": 1}

    def judge(self, prompts: Sequence[JudgePrompt]) -> list[JudgeResult]:
        return [self._one(p) for p in prompts]

    def _one(self, p: JudgePrompt) -> JudgeResult:
        view, draft = p.prompt.view, p.draft
        forced = _FORCE.search(view.instruction + view.original_instruction)
        checks = {
            "translation_fidelity": lambda: _translation(draft["transformed_input"]),
            "reasoning_soundness": lambda: _reasoning(view.lang, draft["reasoning"]),
            "answer_english_consistent": lambda: _answer(view.reference_output, draft["response"]),
            "keeps_viewpoint": lambda: _viewpoint(view.reference_output, draft["response"]),
        }
        scores = {}
        for name in p.criteria:
            score, reason = (int(forced.group(1)), "score forced by a [[judge:N]] marker") if forced else checks[name]()
            scores[name] = {"score": score, "reason": reason}
        return JudgeResult(scores=scores, raw_text="fake-judge", prompt_tokens=prompt_tokens(p.prompt),
                           completion_tokens=40)


def _cjk_share(text: str) -> float:
    return len(_CJK.findall(text)) / max(len(text.replace(" ", "")), 1)


def _translation(text: str) -> tuple[int, str]:
    if not text.strip():
        return 1, "There is no English rendering of the input."
    if _cjk_share(text) > 0.2:
        return 2, "The rendering still holds untranslated Japanese or Chinese text."
    if STAND_IN in text or text.startswith("[fake"):
        return 3, "A marked stand-in, not a real translation; a person should check it."
    return 4, "An English rendering with no untranslated text."


def _reasoning(lang: str, text: str) -> tuple[int, str]:
    if len(text.split()) < 8:
        return 2, "The reasoning is too short to show any steps."
    if lang != "en" and not text.strip().startswith(translation_directive(lang)):
        return 3, "The reasoning does not open with the translation directive."
    return 4, "The reasoning has several steps and the expected opening."


def _answer(reference: str, response: str) -> tuple[int, str]:
    if not response.strip():
        return 1, "There is no response."
    if _cjk_share(response) > 0.2:
        return 1, "The response is not in English."
    missing = set(_NUMBER.findall(reference)) - set(_NUMBER.findall(response))
    if missing:
        return 2, f"The response drops numbers the reference states ({', '.join(sorted(missing))})."
    return 5, "An English response that keeps the reference's numbers."


def _viewpoint(reference: str, response: str) -> tuple[int, str]:
    if STAND_IN in response:
        return 3, "A stand-in translation cannot show whether the author's viewpoint is kept."
    ref, got = set(_WORD.findall(reference.lower())), set(_WORD.findall(response.lower()))
    share = len(ref & got) / max(len(ref), 1)
    if share >= 0.5:
        return 5, "The response keeps the reference's own terms and position."
    return 3 if share >= 0.2 else 2, f"The response shares only {share:.0%} of the reference's own terms."

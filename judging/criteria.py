"""What a judge scores, which criteria apply to a record, and how criterion scores combine.

Each criterion gets an integer score 1-5 and a one-sentence reason. Which apply:

- ``translation_fidelity``: ja/zh records only; ``transformed_input`` renders the native text faithfully in English.
- ``reasoning_soundness``: every record; the steps follow from the input and lead to the answer.
- ``answer_english_consistent``: every record; the response is English and agrees with the reference answer.
- ``keeps_viewpoint``: ``uniqueness=high`` records only; the response keeps the reference's own position.

Overall score (documented, and part of nothing but the policy's input): the mean of the applicable criterion
scores, capped at the lowest score plus one, so that one poor criterion cannot be averaged away
(5, 5, 1 -> 2.0; 5, 4, 4 -> 4.33).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

SCORE_MIN, SCORE_MAX = 1, 5


@dataclass(frozen=True)
class Criterion:
    name: str
    question: str


CRITERIA: dict[str, Criterion] = {c.name: c for c in (
    Criterion("translation_fidelity",
              "Is transformed_input a faithful, complete English translation of the native-language input?"),
    Criterion("reasoning_soundness",
              "Does the reasoning follow soundly from the instruction and input and lead to the response?"),
    Criterion("answer_english_consistent",
              "Is the response written in English and consistent with the reference answer (facts, numbers)?"),
    Criterion("keeps_viewpoint",
              "Does the response keep the reference answer's own viewpoint, terms and position?"),
)}


def applicable(lang: str, uniqueness: str | None) -> list[str]:
    names = ["translation_fidelity"] if lang in ("ja", "zh") else []
    names += ["reasoning_soundness", "answer_english_consistent"]
    if (uniqueness or "").lower() == "high":
        names.append("keeps_viewpoint")
    return names


def overall(scores: Mapping[str, int]) -> float:
    if not scores:
        raise ValueError("no criterion scores to combine")
    values = list(scores.values())
    return round(min(sum(values) / len(values), min(values) + 1), 2)


def describe(names: list[str]) -> str:
    """The criteria as the rubric lists them for the judge."""
    return "\n".join(f"- {name}: {CRITERIA[name].question}" for name in names)

"""Automatic flags stored with each draft (the review stage filters and sorts on them).

Flags are short strings, ``name`` or ``name:field``:
``missing:<field>``, ``not_english:<field>``, ``dropped_numbers`` (numbers the reference states that the
response lacks), ``reasoning_short``, ``reasoning_long``, ``artifacts:<field>`` (leftover markup or chat
tokens), ``no_translation_opening`` (a ja/zh reasoning that does not open with the translation directive).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from generation.parse import FIELDS
from generation.records import DraftResult, TrainingView
from generation.restructure import translation_directive
from storage.ingest.langid import detector  # one language list and one detector per process, shared with ingest


@dataclass(frozen=True)
class Limits:
    reasoning_min_words: int = 8
    reasoning_max_words: int = 1200
    language_min_chars: int = 24  # language ID on shorter text is a guess


_ARTIFACTS = re.compile(
    r"<\|[a-z_]+\|>|</?s>|\[/?INST\]|```|^\s*(?:assistant|user|system)\s*:|\bas an ai (?:language )?model\b"
    r"|</?(?:div|span|p|br|think)\b[^>]*>|\{\{|\}\}",
    re.IGNORECASE | re.MULTILINE,
)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_ENUMERATOR = re.compile(r"^\s*\d+[.)]\s", re.MULTILINE)  # "1. ", "2) ": list markers, not facts
_WORD = re.compile(r"[a-z']+")
# English function words that no other candidate language (storage/ingest/langid.py) uses as a common word
# ("is", "in", "of", "die", "so", "a" are left out: Dutch, German, Italian, Spanish use them).
_ENGLISH_WORDS = frozenset(
    "the and that this with from which what when where there their they these those then than have has had was "
    "were are been will would should could can not but for you your its into about because how why who it to be "
    "by at or does did do each first next finally answer".split())
SAMPLE_CHARS = 400  # a sample decides as well as the whole text at half the cost (responses can run to pages)


def check_draft(view: TrainingView, result: DraftResult, limits: Limits = Limits()) -> list[str]:
    if result.failed:
        return []
    values = {name: (getattr(result, name) or "").strip() for name in FIELDS}
    flags = _missing(view, values)
    flags += [f"not_english:{n}" for n in ("transformed_input", "response") if not _is_english(values[n], limits)]
    flags += [f"artifacts:{n}" for n in FIELDS if _ARTIFACTS.search(values[n])]
    flags += _reasoning_flags(view, values["reasoning"], limits)
    if _dropped_numbers(view.reference_output, values["response"]):
        flags.append("dropped_numbers")
    return flags


def _missing(view: TrainingView, values: dict[str, str]) -> list[str]:
    optional = {"transformed_input"} if not view.input.strip() else set()
    return [f"missing:{n}" for n in FIELDS if not values[n] and n not in optional]


def _reasoning_flags(view: TrainingView, reasoning: str, limits: Limits) -> list[str]:
    if not reasoning:
        return []
    words = len(reasoning.split())
    flags = ["reasoning_short"] if words < limits.reasoning_min_words else []
    flags += ["reasoning_long"] if words > limits.reasoning_max_words else []
    if view.lang != "en" and not reasoning.startswith(translation_directive(view.lang)[:40]):
        flags.append("no_translation_opening")
    return flags


def _numbers(text: str) -> set[str]:
    plain = _ENUMERATOR.sub("", unicodedata.normalize("NFKC", text)).replace(",", "")
    return {n.rstrip("0").rstrip(".") if "." in n else n for n in _NUMBER.findall(plain)}


def _dropped_numbers(reference: str, response: str) -> bool:
    return bool(response) and not _numbers(reference) <= _numbers(response)


def _is_english(text: str, limits: Limits) -> bool:
    if not text:
        return True  # reported as missing instead
    if not text.isascii():  # an ASCII text has no CJK letters to count (the count walks every character)
        letters = [c for c in text if c.isalpha()]
        if letters and sum(bool(_CJK.match(c)) for c in letters) / len(letters) > 0.2:
            return False
    if len(text) < limits.language_min_chars:
        return True
    sample = text[:SAMPLE_CHARS]
    return _plainly_english(sample) or _lingua_says_english(sample)


@lru_cache(maxsize=4096)
def _lingua_says_english(sample: str) -> bool:
    """Cached: short stock texts ("(none)", a model's fixed phrases) come back in many drafts."""
    from lingua import Language

    return detector().detect_language_of(sample) in (Language.ENGLISH, None)


def _plainly_english(sample: str) -> bool:
    """ASCII text where at least a quarter of the words are English function words: lingua would say English,
    and asking it costs 0.2-0.4 ms of interpreter time per text, the largest share of a draft's checks. Anything
    else (accents, other scripts, few function words) still goes to lingua."""
    if not sample.isascii():
        return False
    words = _WORD.findall(sample.lower())
    hits = sum(word in _ENGLISH_WORDS for word in words)
    return hits >= 3 and hits * 4 >= len(words)

"""Language identification for records that do not say their language (lingua, a small language set).

The set holds more than en/ja/zh on purpose: a Korean or French record must be recognised as such and
rejected, not forced into the nearest of our three.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from typing import TYPE_CHECKING

from storage.ingest.types import LANGUAGES, Rejection, SourceRecord

if TYPE_CHECKING:
    from lingua import LanguageDetector

# The one candidate list (ingest and the drafts' English check use it). Each Latin-script candidate costs time
# on every English text; other scripts are told apart cheaply.
CANDIDATES = ("ENGLISH", "JAPANESE", "CHINESE", "KOREAN", "FRENCH", "GERMAN", "SPANISH", "PORTUGUESE", "ITALIAN",
              "DUTCH", "RUSSIAN", "ARABIC", "HINDI")
SAMPLE_CHARS = 1000  # enough text to decide; long inputs would only slow detection down
# A few Latin-script words ("Is 7 prime?" / "Yes") are often placed in Spanish or Italian by a thin margin. English is
# the one Latin-script language we take, so a short Latin text that the detector cannot place with this confidence
# is taken as English rather than rejected; longer or confidently foreign text is still rejected.
UNSURE_BELOW = 0.5
SHORT_WORDS = 12
LATIN_END = "\u0250"  # Basic Latin through Latin Extended-B


@lru_cache(maxsize=1)
def detector() -> "LanguageDetector":
    """Built once per process on first use: building it takes a while."""
    from lingua import Language, LanguageDetectorBuilder

    return LanguageDetectorBuilder.from_languages(*(getattr(Language, n) for n in CANDIDATES)).build()


def detect(text: str) -> tuple[str, str] | None:
    """(ISO 639-1 code, English name) of the text's language, or None when it cannot be told."""
    found = detector().detect_language_of(text[:SAMPLE_CHARS])
    return None if found is None else (found.iso_code_639_1.name.lower(), found.name.title())


def fill_language(record: SourceRecord) -> SourceRecord | Rejection:
    if record.lang is not None:
        return record
    # The answer is part of the evidence: short questions alone are often ambiguous.
    text = "\n".join((record.instruction, record.input, record.output))
    found = detect(text)
    if found is not None and found[0] not in LANGUAGES and _short_latin_and_unsure(text):
        found = ("en", "English")
    if found is None or found[0] not in LANGUAGES:
        seen = "could not identify it" if found is None else f"detected {found[1]}"
        return Rejection(record.file, record.line, f"unknown language: {seen} (expected {', '.join(LANGUAGES)})")
    return replace(record, lang=found[0])


def _short_latin_and_unsure(text: str) -> bool:
    if len(text.split()) >= SHORT_WORDS or any(ch >= LATIN_END for ch in text if ch.isalpha()):
        return False
    confidences = detector().compute_language_confidence_values(text[:SAMPLE_CHARS])
    return not confidences or confidences[0].value < UNSURE_BELOW

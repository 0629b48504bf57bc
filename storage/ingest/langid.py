"""Language identification for records that do not say their language (lingua, a small language set).

The set holds more than en/ja/zh on purpose: a Korean or French record must be recognised as such and
rejected, not forced into the nearest of our three.
"""

from __future__ import annotations

import threading
import time
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


WARM_TEXT = "A sentence in English, to load the language models now."
_warming: threading.Thread | None = None
_warming_lock = threading.Lock()


@lru_cache(maxsize=1)
def detector() -> "LanguageDetector":
    """Built once per process on first use: its first detection loads the language models (seconds of CPU).
    While ``warm_in_background`` loads them, this waits for it rather than load the rest in one go."""
    from lingua import Language, LanguageDetectorBuilder

    warming = _warming
    if warming is not None and warming is not threading.current_thread():
        warming.join()
    return LanguageDetectorBuilder.from_languages(*(getattr(Language, n) for n in CANDIDATES)).build()


def warm_in_background() -> threading.Thread:
    """Load the models on a thread of their own, one language at a time (a teacher worker calls this as it starts
    taking tasks). lingua holds the interpreter while it loads: all at once that is ~2.7 s in which no other thread
    of the process runs (a worker that loaded them before its first task was out ~3 s longer after each restart;
    one that loaded them inside its first chunk starved the teacher's event loop into client timeouts). One
    language at a time holds it at most ~0.7 s at once (English with the first), well inside a request's timeout."""
    global _warming
    with _warming_lock:
        if _warming is None:
            _warming = threading.Thread(target=_warm_in_steps, name="language-models", daemon=True)
            _warming.start()
        return _warming


def _warm_in_steps() -> None:
    from lingua import Language, LanguageDetectorBuilder

    english = Language.ENGLISH
    for name in CANDIDATES:
        other = getattr(Language, name)
        if other is not english:  # a detection among two candidates loads those two languages' models only
            LanguageDetectorBuilder.from_languages(english, other).build().detect_language_of(WARM_TEXT)
            time.sleep(0.01)  # the other threads run between two languages
    detector().detect_language_of(WARM_TEXT)  # every model it needs is loaded: this takes a millisecond


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

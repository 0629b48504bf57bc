"""The seed's restructuring, as a pure function.

English records keep their Q&A. Japanese and Chinese records become: an English instruction (a
per-language directive), the native text as input (original instruction, then original input), and an
English answer that generation supplies. The model reads Japanese and answers in English.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from generation.records import TrainingView

LANGUAGE_NAMES = {"en": "English", "ja": "Japanese", "zh": "Chinese"}

DEFAULT_DIRECTIVES: dict[str, str] = {
    "ja": "Read the following Japanese text, which holds an instruction and its context. Answer it in English.",
    "zh": "Read the following Chinese text, which holds an instruction and its context. Answer it in English.",
}

# The reasoning of a ja/zh draft opens with this, as in the seed.
TRANSLATION_DIRECTIVE = (
    "Please translate the following {language} input texts into English and respond according to the "
    "instructions (English input texts)."
)


class RecordLike(Protocol):
    id: int
    key: str
    lang: str
    instruction: str
    input: str
    output: str
    field: str | None
    uniqueness: str | None
    content_hash: str


def translation_directive(lang: str) -> str:
    return TRANSLATION_DIRECTIVE.format(language=LANGUAGE_NAMES.get(lang, lang))


def native_input(instruction: str, input_text: str) -> str:
    """The original instruction followed by the original input, as one native-language input."""
    parts = [instruction.strip(), (input_text or "").strip()]
    return "\n\n".join(p for p in parts if p)


def restructure(record: RecordLike, directives: Mapping[str, str] | None = None) -> TrainingView:
    directives = {**DEFAULT_DIRECTIVES, **(directives or {})}
    common: dict[str, Any] = dict(
        record_id=record.id, key=record.key, lang=record.lang, reference_output=record.output,
        field=record.field, uniqueness=record.uniqueness, content_hash=record.content_hash,
        original_instruction=record.instruction, original_input=record.input or "",
    )
    if record.lang == "en" or record.lang not in directives:
        return TrainingView(instruction=record.instruction, input=record.input or "", **common)
    return TrainingView(
        instruction=directives[record.lang], input=native_input(record.instruction, record.input), **common
    )

"""Validation, language identification and hashing, without a database."""

from __future__ import annotations

import pytest

from storage.ingest.hashing import content_hash, derived_key, fill_hash
from storage.ingest.langid import detect, fill_language
from storage.ingest.types import RawRecord, Rejection, SourceRecord
from storage.ingest.validate import Validator
from tests.ingest.conftest import EN

validate = Validator(max_record_bytes=2000)


def check(data: dict, size: int | None = None) -> SourceRecord | Rejection:
    return validate(RawRecord("f.jsonl", 7, data, size))


def reason(data: dict, size: int | None = None) -> str:
    result = check(data, size)
    assert isinstance(result, Rejection), result
    assert str(result).startswith("f.jsonl:7: ")
    return result.reason


def test_valid_record_keeps_unknown_keys_as_meta():
    record = check({**EN, "id": 12, "lang": "EN-us", "source": "web", "tags": ["a"]})
    assert isinstance(record, SourceRecord)
    assert (record.key, record.lang, record.field, record.uniqueness) == ("12", "en", "quality", "low")
    assert record.meta == {"source": "web", "tags": ["a"]}


def test_alpaca_row_is_valid_as_it_is():
    record = check({"instruction": "Give three tips for staying healthy.", "input": "", "output": "Eat, sleep, move."})
    assert isinstance(record, SourceRecord)
    assert record.key is None and record.lang is None and record.meta == {}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"output": "o"}, "missing required field 'instruction'"),
        ({"instruction": "q"}, "missing required field 'output'"),
        ({"instruction": "q", "output": None}, "missing required field 'output'"),
        ({"instruction": 5, "output": "o"}, "field 'instruction' must be a string, got int"),
        ({"instruction": "q", "output": ["o"]}, "field 'output' must be a string, got list"),
        ({"instruction": "  ", "output": "o"}, "required field 'instruction' is empty"),
        ({"instruction": "q", "input": 3, "output": "o"}, "field 'input' must be a string, got int"),
        ({"instruction": "q", "output": "o", "id": True}, "field 'id' must be a string or an integer, got bool"),
        ({"instruction": "q", "output": "o", "id": "x" * 201}, "field 'id' is longer than 200 characters"),
        ({"instruction": "q", "output": "o", "uniqueness": "u" * 51}, "field 'uniqueness' is longer than 50 characters"),
        ({"instruction": "q", "output": "o", "lang": "fr"}, "unknown language 'fr' (expected en, ja, zh)"),
        ({"instruction": "q\x00", "output": "o"}, "field 'instruction' contains a NUL character"),
        ({"instruction": "q", "output": "o", "note": "a\x00"}, "contains a NUL character in its metadata"),
    ],
)
def test_rejection_reasons(data, expected):
    assert reason(data) == expected


def test_size_limit_uses_the_size_in_the_file_or_an_estimate():
    assert reason({**EN}, size=2001) == "record is 2001 bytes, over the limit of 2000 (--max-record-bytes)"
    assert isinstance(check({**EN}, size=2000), SourceRecord)
    assert reason({**EN, "output": "x" * 3000}).startswith("record is 3")


@pytest.mark.parametrize(
    ("text", "lang"),
    [("How do I measure the spread of a process?", "en"), ("工程のばらつきをどう測りますか。", "ja"),
     ("如何衡量过程的波动？", "zh")],
)
def test_language_detection(text, lang):
    assert detect(text)[0] == lang
    record = fill_language(SourceRecord("f", 1, None, None, text, "", text, None, None, {}))
    assert isinstance(record, SourceRecord) and record.lang == lang


def test_other_languages_are_rejected_as_unknown():
    record = SourceRecord("f", 3, None, None, "Quelle est la capitale de la France ?", "", "C'est Paris.", None, None, {})
    assert str(fill_language(record)) == "f:3: unknown language: detected French (expected en, ja, zh)"
    record = SourceRecord("f", 4, None, None, "12345", "", "678", None, None, {})
    assert str(fill_language(record)) == "f:4: unknown language: could not identify it (expected en, ja, zh)"


@pytest.mark.parametrize("question,answer", [("Is 7 prime?", "Yes"), ("Pizza or pasta?", "Pasta"),
                                             ("Name a color.", "Red")])
def test_a_few_english_words_the_detector_cannot_place_are_taken_as_english(question, answer):
    """Short English records must not be lost as "detected Spanish/Italian" on a thin margin."""
    record = fill_language(SourceRecord("f", 1, None, None, question, "", answer, None, None, {}))
    assert isinstance(record, SourceRecord) and record.lang == "en"


@pytest.mark.parametrize("question,answer,name", [
    ("Hola, ¿cómo estás?", "Bien, gracias.", "Spanish"),  # short, but the detector is sure
    ("Wie spät ist es und wann fährt der nächste Zug nach Berlin ab, bitte?", "Um acht Uhr.", "German"),  # long
    ("Как дела?", "Хорошо.", "Russian"),  # short, but not Latin script
])
def test_confident_or_long_or_non_latin_foreign_text_is_still_rejected(question, answer, name):
    record = SourceRecord("f", 2, None, None, question, "", answer, None, None, {})
    assert str(fill_language(record)) == f"f:2: unknown language: detected {name} (expected en, ja, zh)"


def test_derived_ids_are_stable_and_follow_the_question():
    base = SourceRecord("f", 1, None, "en", "Q?", "ctx", "A.", None, None, {})
    first, again = fill_hash(base), fill_hash(SourceRecord("g", 9, None, "en", "Q?", "ctx", "A.", None, None, {}))
    assert first.key == again.key == derived_key("Q?", "ctx") == "h-" + first.key[2:] and len(first.key) == 26
    assert first.content_hash == again.content_hash
    fixed = fill_hash(SourceRecord("f", 1, None, "en", "Q?", "ctx", "Better answer.", None, None, {}))
    assert fixed.key == first.key and fixed.content_hash != first.content_hash
    assert fill_hash(SourceRecord("f", 1, None, "en", "Q?", "other", "A.", None, None, {})).key != first.key


def test_content_hash_covers_tags_and_meta_but_not_key_order():
    base = SourceRecord("f", 1, "k", "en", "Q", "", "A", "math", "low", {"a": 1, "b": 2})
    same = SourceRecord("f", 2, "k", "en", "Q", "", "A", "math", "low", {"b": 2, "a": 1})
    assert content_hash(base) == content_hash(same)
    for changed in (SourceRecord("f", 1, "k", "en", "Q", "", "A", "math", "high", {"a": 1, "b": 2}),
                    SourceRecord("f", 1, "k", "en", "Q", "", "A", "math", "low", {"a": 1})):
        assert content_hash(changed) != content_hash(base)

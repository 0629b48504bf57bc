from dataclasses import dataclass

from generation.restructure import DEFAULT_DIRECTIVES, native_input, restructure, translation_directive


@dataclass
class Rec:
    lang: str
    instruction: str
    input: str = ""
    output: str = "answer"
    id: int = 1
    key: str = "k1"
    field: str | None = "math"
    uniqueness: str | None = "low"
    content_hash: str = "h"


def test_english_record_keeps_its_question_and_answer():
    view = restructure(Rec("en", "What is 2+2?", "context"))
    assert (view.instruction, view.input, view.reference_output) == ("What is 2+2?", "context", "answer")


def test_japanese_record_becomes_english_directive_with_native_input():
    view = restructure(Rec("ja", "直交表とは何ですか？", "品質工学の文脈で"))
    assert view.instruction == DEFAULT_DIRECTIVES["ja"]
    assert view.input == "直交表とは何ですか？\n\n品質工学の文脈で"
    assert view.original_instruction == "直交表とは何ですか？"
    assert (view.field, view.uniqueness) == ("math", "low")


def test_chinese_record_without_input_uses_instruction_alone():
    view = restructure(Rec("zh", "什么是正交表？"))
    assert view.instruction == DEFAULT_DIRECTIVES["zh"]
    assert view.input == "什么是正交表？"


def test_directives_are_configurable_per_language():
    view = restructure(Rec("ja", "質問"), directives={"ja": "Answer in English."})
    assert view.instruction == "Answer in English."


def test_translation_directive_names_the_language():
    assert "Japanese input texts into English" in translation_directive("ja")
    assert native_input("  a ", "") == "a"

import pytest

from generation.checks import check_draft
from generation.parse import ParseError, parse_draft, parse_json_draft
from generation.records import DraftResult, TrainingView
from generation.restructure import translation_directive

GOOD_REASONING = "First read the question, then add the two numbers given in the input, and state the sum."


def test_parse_accepts_json_fenced_json_embedded_json_and_sections():
    full = '{"transformed_input": "t", "reasoning": "r", "response": "x"}'
    expected = {"transformed_input": "t", "reasoning": "r", "response": "x"}
    assert parse_json_draft(full) == expected
    assert parse_draft(f"Here you go:\n```json\n{full}\n```") == expected
    assert parse_draft(f"Sure. {full} Hope it helps.") == expected
    sections = "### Transformed input\nt\n\n**Reasoning:** step one\nstep two\nFinal answer: 42"
    assert parse_draft(sections) == {"transformed_input": "t", "reasoning": "step one\nstep two", "response": "42"}


def test_parse_rejects_text_without_fields():
    with pytest.raises(ParseError):
        parse_draft("I am not sure what you mean.")
    with pytest.raises(ValueError):
        parse_json_draft('{"transformed_input": "t", "reasoning": ')


def _view(lang="en", reference="The total is 1,250 yen and 3.50 kg.", input_text="Some input text here."):
    return TrainingView(1, "k", lang, "Compute it.", input_text, reference)


def _draft(**fields):
    return DraftResult(**{"transformed_input": "Some input text here.", "reasoning": GOOD_REASONING,
                          "response": "The total is 1250 yen and 3.5 kg.", **fields})


def test_a_good_draft_has_no_flags():
    assert check_draft(_view(), _draft()) == []


def test_missing_fields_dropped_numbers_and_length():
    flags = check_draft(_view(), _draft(reasoning="Add.", response="The total is 1250 yen.", transformed_input=""))
    assert set(flags) == {"missing:transformed_input", "reasoning_short", "dropped_numbers"}
    assert check_draft(_view(input_text=""), _draft(transformed_input="")) == []
    assert "reasoning_long" in check_draft(_view(), _draft(reasoning="word " * 2000))


def test_list_numbers_in_the_reference_are_not_facts_to_keep():
    view = _view(reference="1. Measure twice.\n2. Cut 3 times.")
    assert check_draft(view, _draft(response="Measure twice, then cut 3 times.")) == []
    assert check_draft(view, _draft(response="Measure twice, then cut.")) == ["dropped_numbers"]


def test_non_english_fields_and_artifacts_are_flagged():
    flags = check_draft(_view(), _draft(response="合計は1250円と3.5kgです。", transformed_input="Der Text enthält "
                                        "einige Wörter, die nicht englisch sind, und das ist falsch."))
    assert {"not_english:response", "not_english:transformed_input"} <= set(flags)
    flags = check_draft(_view(), _draft(reasoning=GOOD_REASONING + " <|im_end|>", response="Assistant: 1250 3.5"))
    assert {"artifacts:reasoning", "artifacts:response"} <= set(flags)


def test_japanese_records_need_the_translation_opening():
    view = _view(lang="ja", reference="合計は1,250円です。")
    opening = translation_directive("ja")
    assert check_draft(view, _draft(reasoning=f"{opening} {GOOD_REASONING}", response="It is 1250 yen.")) == []
    assert "no_translation_opening" in check_draft(view, _draft(response="It is 1250 yen."))


def test_failed_drafts_get_no_flags():
    assert check_draft(_view(), DraftResult(error="boom")) == []

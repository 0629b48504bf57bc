"""Key reading without a terminal, and the $EDITOR file format (no database needed)."""

import io

import pytest

from review import editor
from review.rules import InvalidEditError
from review.terminal import read_key

FIELDS = ("transformed_input", "reasoning", "response")


def test_without_a_tty_a_key_is_the_first_letter_of_a_line_and_end_of_input_quits():
    stream = io.StringIO("Approve\n\nr\n")
    assert [read_key(stream) for _ in range(4)] == ["a", "", "r", "q"]


def test_the_editor_text_round_trips_including_hashes_and_blank_lines_inside():
    values = {"transformed_input": "", "reasoning": "# Step 1\n\nadd.\n=== not a header", "response": "四。"}
    text = editor.to_text(7, 3, values)
    assert text.startswith("# Draft 7 (version 3).")
    assert editor.parse(text, FIELDS) == values


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stray\n=== reasoning ===\nx", "line 1: text outside a section"),
        ("=== reasoning ===\nx\n=== reasoning ===\ny", "line 3: section 'reasoning' appears twice"),
        ("=== answer ===\nx", "line 1: unknown section 'answer'"),
        ("=== reasoning ===\nx", "missing section"),
    ],
)
def test_bad_editor_text_names_the_line(text, message):
    with pytest.raises(InvalidEditError, match=message):
        editor.parse(text, FIELDS)


def test_the_reason_for_a_refusal_replaces_an_older_one_on_reopen():
    text = editor.with_problem(editor.with_problem("=== reasoning ===\nx\n", "first"), "second")
    assert text.count(editor.PROBLEM) == 1 and text.startswith(editor.PROBLEM + "second")

"""SFT layouts (training/examples.py) on the same Jinja2 engine as the prompt templates."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from training.examples import DEFAULT_TEMPLATE, SftTemplate, load_sft_template, make_example

LEGACY = Path(__file__).with_name("data") / "sft_legacy_renders.json"
ROW = dict(content_hash="", field="math", uniqueness="high", draft_template_hash="t", draft_id=1)


def row(**values):  # type: ignore[no-untyped-def]
    return SimpleNamespace(**{**ROW, **values})


def test_seed_layout_and_format_string_files_render_as_before():
    """Captured from the format-string renderer before it was replaced."""
    for case in json.loads(LEGACY.read_text(encoding="utf-8")):
        name, prompt, completion = case["template"]
        template = DEFAULT_TEMPLATE if name == "seed" else SftTemplate(name, prompt, completion, legacy=True)
        example = make_example(row(**case["case"]), template)
        assert (example.prompt, example.completion) == (case["prompt"], case["completion"]), case["case"]["key"]


def test_jinja_files_have_conditions_else_and_nesting(tmp_path):
    path = tmp_path / "mine.toml"
    # trim_blocks and lstrip_blocks, as in prompt templates: a line holding only a tag leaves nothing behind.
    path.write_text('prompt = """Q ({{ lang }}): {{ instruction }}\n{% if input %}\n'
                    '  {% if field == "math" %}[math] {% endif %}{{ input }}\n{% else %}\n(no input)\n{% endif %}\n'
                    'A: """\ncompletion = "{{ response }}"\n', encoding="utf-8")
    template = load_sft_template(path)
    assert not template.legacy and template.name == "mine"
    with_input = make_example(row(id=1, key="a", lang="en", instruction="Sum?", input="1 2", output="3",
                                  draft_reasoning="r", draft_transformed_input="", draft_response="3"), template)
    assert (with_input.prompt, with_input.completion) == ("Q (en): Sum?\n[math] 1 2\nA: ", "3")
    without = make_example(row(id=2, key="b", lang="en", instruction="Hi?", input="", output="x",
                               draft_reasoning="r", draft_transformed_input="", draft_response="x"), template)
    assert without.prompt == "Q (en): Hi?\n(no input)\nA: "


@pytest.mark.parametrize(("text", "message"), [
    ('prompt = "{{ question }}"\ncompletion = "{{ response }}"\n', r"unknown placeholder\(s\) \['question'\]"),
    ('prompt = "{% if input %}x"\ncompletion = "{{ response }}"\n', r"prompt line 1: .*endif"),
    ('prompt = "{instruction!r}"\ncompletion = "{response}"\n', r"\{instruction\} is not a plain placeholder"),
])
def test_broken_files_name_the_file_and_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=rf"bad\.toml: {message}"):
        load_sft_template(path)

import json
from pathlib import Path

import pytest

from generation.records import TrainingView
from generation.restructure import translation_directive
from generation.templates import (
    DEFAULT_TEMPLATE,
    TemplateError,
    TemplateNotFoundError,
    list_templates,
    load_template,
    validate_views,
)

JA = TrainingView(1, "k", "ja", "Answer in English.", "本文", "答え", field="physics", uniqueness="high")
EN = TrainingView(2, "k2", "en", "What is 2+2?", "", "4", uniqueness="low")
LEGACY_RENDERS = Path(__file__).with_name("data") / "legacy_renders.json"


def test_default_follows_the_seed_for_japanese_and_uses_the_tags():
    prompt = load_template().render(JA)
    assert translation_directive("ja") in prompt.system and "Japanese" in prompt.system
    assert "own viewpoint" in prompt.system and "physics" in prompt.system
    assert "本文" in prompt.user and "答え" in prompt.user and "reviewer" not in prompt.user.lower()
    assert "{" not in prompt.system + prompt.user  # no template syntax reaches the model


def test_english_records_skip_the_translation_and_low_uniqueness_the_viewpoint_rule():
    prompt = load_template().render(EN)
    assert "Please translate" not in prompt.system and "own viewpoint" not in prompt.system
    assert "unchanged" in prompt.system and "(none)" in prompt.user


def test_reviewer_note_is_included_verbatim_braces_and_jinja_syntax_and_all():
    note = "Say {why} and {{ not_a_variable }} {% if x %}, not just the number."
    prompt = load_template().render(EN, note=note)
    assert note in prompt.user


def test_new_defaults_are_jinja_under_new_names_and_old_files_still_load():
    default = load_template()
    assert default.name == DEFAULT_TEMPLATE == "reason" and default.syntax == "jinja"
    legacy = load_template("default")
    assert legacy.syntax == "legacy" and legacy.hash != default.hash and len(default.hash) == 64
    assert (legacy.version, load_template("concise").version, load_template("reason-concise").version) == ("2", "1", "2")
    assert {"default", "concise", "reason", "reason-concise"} <= {t.name for t in list_templates()}


def test_legacy_templates_render_exactly_as_the_old_renderer_did():
    """Captured from the hand-rolled renderer before it was replaced: existing drafts keep their lineage."""
    cases = json.loads(LEGACY_RENDERS.read_text(encoding="utf-8"))
    for case in cases:
        template = load_template(case["template"])
        prompt = template.render(TrainingView(*case["view"]), case["note"])
        assert template.hash == case["hash"]
        assert (prompt.system, prompt.user) == (case["system"], case["user"])


def test_nesting_and_else_work(tmp_path):
    (tmp_path / "nest.jinja").write_text(
        "[system]\nA{% if field == 'math' %}B{% if uniqueness == 'high' %}C{% endif %}D{% else %}X{% endif %}E\n"
        "[user]\n{{ instruction }}\n", encoding="utf-8")
    nest = load_template("nest", tmp_path)
    view = TrainingView(3, "k3", "en", "q", "", "a", field="math", uniqueness="low")
    assert nest.render(view).system == "ABDE"
    assert nest.render(TrainingView(3, "k3", "en", "q", "", "a", field="math", uniqueness="high")).system == "ABCDE"
    assert nest.render(EN).system == "AXE"


def test_legacy_nesting_is_no_longer_mangled(tmp_path):
    (tmp_path / "old.txt").write_text("[system]\nA{?field=math}B{?uniqueness=high}C{/?}D{/?}E\n[user]\nu\n",
                                      encoding="utf-8")
    view = TrainingView(3, "k3", "en", "q", "", "a", field="math", uniqueness="low")
    assert load_template("old", tmp_path).render(view).system == "ABDE"


def test_user_templates_are_found_and_may_shadow_built_ins(tmp_path):
    (tmp_path / "mine.txt").write_text("# version: 7\n[system]\nBe brief.{?lang=ja|zh} Translate first.{/?}\n"
                                       "[user]\n{instruction} {{literal}}\n", encoding="utf-8")
    mine = load_template("mine", tmp_path)
    assert mine.render(JA).system == "Be brief. Translate first." and mine.render(EN).system == "Be brief."
    assert mine.render(EN).user == "What is 2+2? {literal}" and mine.version == "7"
    (tmp_path / "reason.jinja").write_text("[system]\nx\n[user]\n{{ input }}y\n", encoding="utf-8")
    assert load_template("reason", tmp_path).text.startswith("[system]")


def test_broken_templates_fail_at_load_naming_the_file_and_the_problem(tmp_path):
    (tmp_path / "bad.jinja").write_text("[system]\n{% if lang %}{{ nope }}{% endif %}\n[user]\nu\n", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"bad\.jinja: unknown variable\(s\) nope; known: .*instruction"):
        load_template("bad", tmp_path)  # unknown even in a branch the sample would not take
    (tmp_path / "syntax.jinja").write_text("[system]\nok\n[user]\n{% if lang %}open\n", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"syntax\.jinja \[user\] line \d+: .*endif"):
        load_template("syntax", tmp_path)
    (tmp_path / "nosections.jinja").write_text("hello", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"nosections\.jinja: a template needs \[system\] and \[user\]"):
        load_template("nosections", tmp_path)
    (tmp_path / "attr.jinja").write_text("[system]\n{{ field.nope }}\n[user]\nu\n", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"attr\.jinja \[system\].*nope"):
        load_template("attr", tmp_path)
    with pytest.raises(TemplateNotFoundError, match="known: .*reason"):
        load_template("missing", tmp_path)
    with pytest.raises(TemplateError, match="not a template name"):
        load_template("../etc/passwd", tmp_path)


def test_the_sandbox_refuses_python_internals(tmp_path):
    (tmp_path / "evil.jinja").write_text("[system]\n{{ instruction.__class__.__mro__ }}\n[user]\nu\n",
                                         encoding="utf-8")
    with pytest.raises(TemplateError, match="evil"):
        load_template("evil", tmp_path)


def test_a_template_that_renders_empty_for_some_record_names_the_records(tmp_path):
    (tmp_path / "jaonly.jinja").write_text("[system]\ns\n[user]\n{% if lang == 'ja' %}{{ input }}{% endif %}\n",
                                           encoding="utf-8")
    template = load_template("jaonly", tmp_path)
    validate_views(template, [JA])
    with pytest.raises(TemplateError, match=r"fails for 1 record\(s\): record k2: .*jaonly\.jinja \[user\] renders empty"):
        validate_views(template, [JA, EN])

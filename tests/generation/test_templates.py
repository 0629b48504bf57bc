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
    versions = (legacy.version, load_template("concise").version, load_template("reason-concise").version)
    assert versions == ("2", "1", "2")
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
    empty = r"fails for 1 record\(s\): record k2: .*jaonly\.jinja \[user\] renders empty"
    with pytest.raises(TemplateError, match=empty):
        validate_views(template, [JA, EN])


# --- the CLI, and the check before any request is sent -------------------------------------------------------

def _cli(db_url, *args):  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from cli.main import app

    return CliRunner().invoke(app, ["--database-url", db_url, *args], env={"COLUMNS": "80"})


def test_cli_lists_shows_and_renders_exactly_the_prompt(wired, db_url):
    from tests.helpers import add_records

    with wired.uow() as uow:
        add_records(uow, "ds", [{"key": "q1", "lang": "ja", "instruction": "質問", "input": "本文", "output": "答え"}])
        add_records(uow, "other", [{"key": "q1", "instruction": "Q"}])
    listed = json.loads(_cli(db_url, "templates", "list", "--json").output)
    by_name = {t["name"]: t for t in listed}
    assert by_name["reason"]["default"] and by_name["reason"]["hash"] == load_template().hash
    assert by_name["default"]["syntax"] == "legacy" and by_name["default"]["version"] == "2"
    table = _cli(db_url, "templates", "list").output
    assert all(len(line) <= 80 for line in table.splitlines()) and "reason (default)" in table

    shown = json.loads(_cli(db_url, "templates", "show", "reason", "--json").output)
    assert "note" in shown["variables"] and shown["text"] == load_template().text

    ambiguous = _cli(db_url, "templates", "render", "reason", "--record", "q1")
    assert ambiguous.exit_code == 2 and "--dataset" in ambiguous.output
    rendered = json.loads(_cli(db_url, "templates", "render", "reason", "-r", "q1", "-d", "ds", "--note", "Fix it.",
                               "--json").output)
    with wired.uow() as uow:
        (_, record), = uow.records.by_key("q1", "ds")
        from generation.restructure import restructure

        expected = load_template().render(restructure(record), "Fix it.")
    assert (rendered["system"], rendered["user"]) == (expected.system, expected.user)
    missing = _cli(db_url, "templates", "render", "reason", "-r", "nope")
    assert missing.exit_code == 4 and "no record with key 'nope'" in missing.output  # not found


def test_generate_refuses_a_template_that_renders_empty_for_a_record_before_any_request(wired, db_url, tmp_path):
    from sqlalchemy import func, select

    from storage.models import Batch
    from tests.helpers import add_records

    (tmp_path / "jaonly.jinja").write_text("[system]\ns\n[user]\n{% if lang == 'ja' %}{{ input }}{% endif %}\n",
                                           encoding="utf-8")
    with wired.uow() as uow:
        add_records(uow, "ds", [{"key": "j1", "lang": "ja", "instruction": "質問", "input": "本文"},
                                {"key": "e1", "instruction": "Q"}])
    result = _cli(db_url, "--templates-dir", str(tmp_path), "generate", "-d", "ds", "-b", "fake", "-t", "jaonly")
    assert result.exit_code == 2
    assert "fails for 1 record(s): record e1:" in result.output and "renders empty" in result.output
    with wired.uow() as uow:
        assert uow.session.scalar(select(func.count()).select_from(Batch)) == 0


def test_values_that_break_a_template_are_found_and_safe_templates_skip_the_records(tmp_path):
    from generation.templates import validate_records

    (tmp_path / "first.jinja").write_text("[system]\ns\n[user]\nStarts with: {{ reference_output[0] }}\n",
                                          encoding="utf-8")
    first = load_template("first", tmp_path)  # the samples at load have a reference answer
    assert not first.file.renders_for_any_values  # indexing depends on the value: render every record
    validate_views(first, [JA, EN])
    no_answer = TrainingView(3, "k3", "en", "q", "", "")
    with pytest.raises(TemplateError, match=r"fails for 1 record\(s\): record k3: .*first\.jinja \[user\]"):
        validate_views(first, [JA, no_answer, EN])

    def unread():  # type: ignore[no-untyped-def]
        raise AssertionError("records were read for a template no value can break")
        yield

    for name in ("reason", "reason-concise", "default", "concise"):
        assert load_template(name).file.renders_for_any_values
        validate_records(load_template(name), unread())


def test_list_shows_a_broken_user_template_with_its_reason(wired, db_url, tmp_path):
    (tmp_path / "bad.jinja").write_text("[system]\n{{ nope }}\n[user]\nu\n", encoding="utf-8")
    result = _cli(db_url, "--templates-dir", str(tmp_path), "templates", "list", "--json")
    assert result.exit_code == 1
    bad = next(t for t in json.loads(result.output) if t["name"] == "bad")
    assert "unknown variable(s) nope" in bad["error"]
    table = _cli(db_url, "--templates-dir", str(tmp_path), "templates", "list")
    assert table.exit_code == 1 and "unusable" in table.output and "reason (default)" in table.output


def test_a_template_is_compiled_once_per_file_version_and_an_edit_is_seen(tmp_path):
    path = tmp_path / "mine.jinja"
    path.write_text("[system]\nYou reason.\n[user]\n{{ instruction }}\n", encoding="utf-8")
    first = load_template("mine", tmp_path)
    assert load_template("mine", tmp_path) is first  # every chunk loads it: compiled once
    path.write_text("[system]\nYou reason carefully.\n[user]\n{{ instruction }}\n", encoding="utf-8")
    edited = load_template("mine", tmp_path)
    assert edited is not first and edited.hash != first.hash
    assert "carefully" in edited.render(TrainingView(0, "k", "en", "Why?", "", "Because.")).system

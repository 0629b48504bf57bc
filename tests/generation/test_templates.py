import pytest

from generation.records import TrainingView
from generation.restructure import translation_directive
from generation.templates import TemplateError, TemplateNotFoundError, list_templates, load_template

JA = TrainingView(1, "k", "ja", "Answer in English.", "本文", "答え", field="physics", uniqueness="high")
EN = TrainingView(2, "k2", "en", "What is 2+2?", "", "4", uniqueness="low")


def test_default_follows_the_seed_for_japanese_and_uses_the_tags():
    prompt = load_template().render(JA)
    assert translation_directive("ja") in prompt.system and "Japanese" in prompt.system
    assert "own viewpoint" in prompt.system and "physics" in prompt.system
    assert "本文" in prompt.user and "答え" in prompt.user and "reviewer" not in prompt.user.lower()


def test_english_records_skip_the_translation_and_low_uniqueness_the_viewpoint_rule():
    prompt = load_template().render(EN)
    assert "Please translate" not in prompt.system and "own viewpoint" not in prompt.system
    assert "copy it unchanged" in prompt.system


def test_reviewer_note_is_included_verbatim_braces_and_all():
    prompt = load_template().render(EN, note="Say {why}, not just the number.")
    assert "Say {why}, not just the number." in prompt.user


def test_templates_have_a_name_version_and_content_hash():
    default, concise = load_template("default"), load_template("concise")
    assert default.hash != concise.hash and len(default.hash) == 64
    assert (default.version, concise.version) == ("2", "1")
    assert {"default", "concise"} <= {t.name for t in list_templates()}


def test_user_templates_are_found_and_may_shadow_built_ins(tmp_path):
    (tmp_path / "mine.txt").write_text("# version: 7\n[system]\nBe brief.{?lang=ja|zh} Translate first.{/?}\n"
                                       "[user]\n{instruction} {{literal}}\n", encoding="utf-8")
    mine = load_template("mine", tmp_path)
    assert mine.render(JA).system == "Be brief. Translate first." and mine.render(EN).system == "Be brief."
    assert mine.render(EN).user == "What is 2+2? {literal}" and mine.version == "7"
    (tmp_path / "default.txt").write_text("[system]\nx\n[user]\ny\n", encoding="utf-8")
    assert load_template("default", tmp_path).text.startswith("[system]")


def test_broken_templates_fail_at_load_naming_the_file(tmp_path):
    (tmp_path / "bad.txt").write_text("[system]\n{nope}\n[user]\nu\n", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"bad\.txt.*nope"):
        load_template("bad", tmp_path)
    (tmp_path / "nosections.txt").write_text("hello", encoding="utf-8")
    with pytest.raises(TemplateError, match="nosections.txt"):
        load_template("nosections", tmp_path)
    with pytest.raises(TemplateNotFoundError, match="known: .*default"):
        load_template("missing", tmp_path)

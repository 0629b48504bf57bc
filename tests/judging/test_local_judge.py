"""The local judge on a tiny random Phi (loaded through from_pretrained): a model that cannot write a judgement
fails every judgement with the reason, and the policy approves nothing."""

from __future__ import annotations

import pytest

from generation.records import DraftResult, TrainingView
from judging.judges import JudgeResult, from_reply
from judging.local import LocalJudge, _LocalJudgeModel
from judging.rubric import load_rubric
from training.tiny import make_tiny_model


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return str(make_tiny_model(tmp_path_factory.mktemp("tiny-phi"), hidden=64))


def _prompts(n: int = 3):
    rubric = load_rubric()
    view = TrainingView(1, "k", "ja", "Answer in English.", "機械は一時間に180本", "1350本です", uniqueness="high")
    return [rubric.render(i, view, {"transformed_input": "x", "reasoning": "y", "response": "z"}) for i in range(n)]


@pytest.mark.slow
def test_a_local_model_that_writes_no_judgement_decides_nothing(tiny_path):
    judge = LocalJudge(_LocalJudgeModel(tiny_path, batch_size=2, max_new_tokens=8, device="cpu"))
    results = judge.judge(_prompts())
    assert len(results) == 3
    assert all(r.failed and r.scores == {} and "not valid JSON" in (r.error or "") for r in results)
    assert all(r.prompt_tokens > 0 and r.raw_text is not None for r in results)


def test_prose_around_the_json_is_read_and_ranges_still_checked():
    [prompt] = _prompts(1)
    good = ('Sure. {"translation_fidelity": {"score": 4, "reason": "ok"}, "reasoning_soundness": {"score": 5, '
            '"reason": "ok"}, "answer_english_consistent": {"score": 3, "reason": "ok"}, "keeps_viewpoint": '
            '{"score": 4, "reason": "ok"}} Hope this helps.')
    result: JudgeResult = from_reply(prompt, DraftResult(response=good, raw_text=good), embedded=True)
    assert not result.failed and result.scores["answer_english_consistent"]["score"] == 3
    bad = good.replace('"score": 3', '"score": 6')
    assert "out of range" in (from_reply(prompt, DraftResult(response=bad), embedded=True).error or "")
    assert "not valid JSON" in (from_reply(prompt, DraftResult(response=good)).error or "")  # teacher: strict

"""The teacher as judge, against the loopback OpenAI-compatible server through the real openai SDK: scores
stored per criterion; malformed replies and missing, non-integer or out-of-range scores are clear failures
that never approve anything."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from judging.plan import JudgeRequest, plan_judge_batch
from reasongen.bootstrap import bootstrap
from reasongen.settings import Settings
from reasongen.testing.openai_server import start_stub_server
from storage.models import Draft, Judgement, Record
from tests.helpers import add_records
from tests.judging.conftest import generate, make_policy
from workers.inprocess import run_here


@pytest.fixture
def server():
    url, handle = start_stub_server()
    yield url, handle
    handle.stop()


@pytest.fixture
def teacher_wired(db_url, server):
    settings = Settings(database_url=db_url, broker_url=None, openai_base_url=server[0], openai_api_key="sk-test",
                        teacher_max_retries=1)
    w = bootstrap(settings)
    yield w
    w.close()


MARKS = {"ok": "", "range": "[[judge:score=7]]", "zero": "[[judge:score=0]]", "malformed": "[[stub:malformed]]",
         "missing": "[[judge:missing]]", "notint": "[[judge:notint]]"}


def _seed(wired):
    rows = [{"key": k, "lang": "ja" if k == "ok" else "en", "uniqueness": "high" if k == "ok" else "low",
             "instruction": f"Question {k} {m}", "input": "機械は一時間に180本" if k == "ok" else "",
             "output": "1350本です" if k == "ok" else f"answer {k}"} for k, m in MARKS.items()]
    with wired.uow() as uow:
        add_records(uow, "ds", rows)


def _judged(wired):
    with wired.uow() as uow:
        rows = uow.session.execute(select(Draft.record_id, Draft.status, Judgement.scores, Judgement.error,
                                          Judgement.overall, Judgement.prompt_tokens)
                                   .join(Judgement, Judgement.draft_id == Draft.id)).all()
        keys = dict(uow.session.execute(select(Record.id, Record.key)).all())
    return {keys[r.record_id]: r for r in rows}


def test_teacher_judge_scores_and_fails_clearly(teacher_wired, server):
    _seed(teacher_wired)
    make_policy(teacher_wired, approve_min=3.5, reject_max=2)
    generate(teacher_wired, judge=None)  # fake drafts; only the judge talks to the server
    planned = plan_judge_batch(teacher_wired, JudgeRequest(dataset="ds", backend="teacher", model="stub-model",
                                                           policy="strict"))
    run_here(teacher_wired, planned.batch_id)
    got = _judged(teacher_wired)
    ok = got["ok"]
    assert ok.error is None and ok.status == "approved" and ok.prompt_tokens > 0
    assert set(ok.scores) == {"translation_fidelity", "reasoning_soundness", "answer_english_consistent",
                              "keeps_viewpoint"}
    assert all(v["score"] == 4 and v["reason"] for v in ok.scores.values())
    expected = {"range": "score 7 is out of range 1-5", "zero": "score 0 is out of range 1-5",
                "malformed": "not valid JSON", "missing": "is missing from the judge's reply",
                "notint": "is not an integer"}
    for key, why in expected.items():
        row = got[key]
        assert why in (row.error or ""), (key, row.error)
        assert row.status == "pending" and row.scores == {} and row.overall is None  # never a silent approve
    stats = server[1].stats()
    assert stats["requests"] >= len(MARKS)


def test_generate_with_teacher_judge_judges_in_the_same_chunk(teacher_wired, server):
    with teacher_wired.uow() as uow:
        add_records(uow, "ds", [{"key": f"k{i}", "instruction": f"Say {i}", "output": f"It is {i}."}
                                for i in range(5)])
    make_policy(teacher_wired, approve_min=4, reject_max=2)
    from judging.plan import judge_params
    from workers.planning import BatchRequest, plan_batch

    req = BatchRequest(dataset="ds", backend="teacher", model="stub-model", chunk_size=2,
                       extra_params=judge_params(teacher_wired, "teacher", "stub-model", policy="strict"))
    planned = plan_batch(teacher_wired, req)
    run_here(teacher_wired, planned.batch_id)
    got = _judged(teacher_wired)
    assert len(got) == 5 and all(r.error is None and r.status == "approved" for r in got.values())
    from workers import monitor

    summary = monitor.batch_summary(teacher_wired, planned.batch_id)
    assert summary["judge_tokens"] > 0 and summary["status"] == "done"

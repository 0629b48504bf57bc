"""`judge --mode batch`: the online judge's requests sent through the batch API of the loopback server, judgements
committed per draft on a real PostgreSQL, at half the online price for the same tokens, nothing sent twice."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from judging.plan import JudgeRequest, plan_judge_batch
from storage.models import Dataset, Draft, Judgement, Record
from tests.batchmode.conftest import ROWS
from tests.batchmode.test_provider_jobs import drive, wait_for_job
from tests.helpers import add_records
from tests.judging.conftest import generate
from workers import provider_jobs
from workers.inprocess import run_here

MARKED = [{"instruction": "Add 1 and 1. [[stub:error:once]]", "output": "2", "key": "error"},
          {"instruction": "Add 2 and 2. [[judge:score=7]]", "output": "4", "key": "range"}]


def drafted(wired: Any, dataset: str, rows: list[dict[str, Any]], *, apart: bool = False) -> None:
    """Records with fake drafts (made here, nothing sent): what the judge scores. ``apart``: the same texts
    under other content hashes, so their judgements have other cache keys (the same prompts all the same)."""
    from sqlalchemy import func, update

    with wired.uow() as uow:
        ids = add_records(uow, dataset, rows)
        if apart:
            uow.session.execute(update(Record).where(Record.id.in_(ids))
                                .values(content_hash=func.md5(Record.content_hash)))
            uow.commit()
    generate(wired, judge=None, dataset=dataset, chunk_size=50)


def plan_judge(wired: Any, dataset: str = "ds", **extra: Any) -> int:
    return plan_judge_batch(wired, JudgeRequest(dataset=dataset, backend="teacher", model="gpt-4o-mini",
                                                **extra)).batch_id


def judgements(wired: Any, dataset: str) -> dict[str, Judgement]:
    """Record key -> the judgement of its draft (exactly one each)."""
    with wired.uow() as uow:
        rows = uow.session.execute(select(Record.key, Judgement).join(Draft, Draft.record_id == Record.id)
                                   .join(Judgement, Judgement.draft_id == Draft.id)
                                   .join(Dataset, Dataset.id == Record.dataset_id).where(Dataset.name == dataset)).all()
        uow.session.expunge_all()
    found = {key: j for key, j in rows}
    assert len(found) == len(rows), "a draft was judged twice"
    return found


def test_judge_in_batch_mode_stores_judgements_at_half_the_online_cost_and_sends_nothing_twice(server, batch_wired):
    url, handle = server(batch_seconds=0.2)
    wired = batch_wired(url)
    rows = [*ROWS[:10], *MARKED]
    drafted(wired, "batch", rows)
    drafted(wired, "online", rows, apart=True)  # the same prompts, judged online below: the price to compare
    batch_id = plan_judge(wired, "batch")
    provider_jobs.start(wired, batch_id)
    drive(wired, batch_id)
    stats = handle.stats()
    assert stats.get("status_200", 0) == 0 and stats["batch_jobs_created"] == 2  # the errored line: a 2nd job
    assert (stats["batch_lines_paid"], stats.get("batch_lines_repeated", 0)) == (12, 0)
    by_batch = judgements(wired, "batch")
    assert len(by_batch) == 12
    assert "out of range" in by_batch["range"].error and by_batch["range"].overall is None
    good = {k: j for k, j in by_batch.items() if k != "range"}
    assert all(j.error is None and j.overall == 4.0 and j.scores for j in good.values())
    with wired.uow() as uow:
        assert uow.batches.get(batch_id).status == "done"
        assert uow.provider_jobs.request_counts(batch_id) == {"done": 12, "resent": 1}  # the 7 was an answer
        retried = [j for j in uow.provider_jobs.for_batch(batch_id) if j.attempt == 2]
        assert [j.requests for j in retried] == [1]  # only the errored request went out again

    online_id = plan_judge(wired, "online")
    run_here(wired, online_id)  # the online teacher judge, same server
    online = judgements(wired, "online")
    assert handle.stats()["status_200"] == 12  # those went online (none of the batch's cache keys matched)
    for key, j in by_batch.items():  # same prompts -> same tokens; the batch price is half
        assert (j.prompt_tokens, j.completion_tokens) == (online[key].prompt_tokens, online[key].completion_tokens)
        assert j.cost_usd == pytest.approx(online[key].cost_usd * 0.5) and j.cost_usd > 0
    summary_cost = sum(j.cost_usd for j in by_batch.values())
    from workers import monitor

    assert monitor.batch_summary(wired, batch_id)["cost_usd"] == pytest.approx(summary_cost, abs=1e-6)


def test_the_same_cache_keys_as_online_a_judged_draft_is_not_judged_again(server, batch_wired):
    url, handle = server(batch_seconds=0.1)
    wired = batch_wired(url)
    drafted(wired, "ds", ROWS[:6])
    batch_id = plan_judge(wired)
    provider_jobs.start(wired, batch_id)
    drive(wired, batch_id)
    run_here(wired, plan_judge(wired))  # online, same judge and rubric: every draft already judged
    again = plan_judge(wired)
    assert provider_jobs.start(wired, again) == []  # in batch mode again: nothing to send either
    stats = handle.stats()
    assert stats.get("status_200", 0) == 0 and stats["batch_lines_paid"] == 6 and stats["batch_jobs_created"] == 1
    with wired.uow() as uow:
        assert uow.batches.get(again).status == "done"


def test_an_expired_judge_job_keeps_its_judgements_and_only_the_rest_is_sent_again(server, batch_wired):
    url, handle = server(batch_seconds=0.3, batch_expire_after=0.5)
    wired = batch_wired(url)
    drafted(wired, "ds", ROWS[:20])
    batch_id = plan_judge(wired)
    provider_jobs.start(wired, batch_id)
    with wired.uow() as uow:
        first = uow.provider_jobs.for_batch(batch_id)[0].id
    wait_for_job(wired, first, "done")
    kept = judgements(wired, "ds")
    assert len(kept) == 10  # the expired job's half, committed before anything else was sent
    handle.configure(batch_expire_after=None, batch_seconds=0.2)
    drive(wired, batch_id)
    found = judgements(wired, "ds")
    assert len(found) == 20 and all(j.error is None for j in found.values())
    assert {k: j.id for k, j in found.items() if k in kept} == {k: j.id for k, j in kept.items()}
    with wired.uow() as uow:
        jobs = uow.provider_jobs.for_batch(batch_id)
        assert [(j.status, j.requests, j.completed) for j in jobs] == [("expired", 20, 10), ("completed", 10, 10)]
    assert handle.stats()["batch_lines_paid"] == 10 and handle.stats().get("batch_lines_repeated", 0) == 0


def test_a_policy_decides_drafts_as_their_batch_judgements_land(server, batch_wired):
    from tests.judging.conftest import make_policy

    url, _ = server(batch_seconds=0.1)
    wired = batch_wired(url)
    drafted(wired, "ds", [*ROWS[:3], {"instruction": "Add 5 and 5. [[judge:score=1]]", "output": "10", "key": "low"}])
    make_policy(wired, approve_min=3.5, reject_max=2)
    batch_id = plan_judge(wired, policy="strict")
    provider_jobs.start(wired, batch_id)
    drive(wired, batch_id)
    with wired.uow() as uow:
        status = dict(uow.session.execute(select(Record.key, Draft.status)
                                          .join(Draft, Draft.record_id == Record.id)).all())
    assert status == {"k0": "approved", "k1": "approved", "k2": "approved", "low": "rejected"}


def test_answers_to_a_rubric_changed_after_submission_are_kept_under_the_rubric_they_were_asked_with(
        server, batch_wired, tmp_path):
    from judging.rubric import BUILTIN_DIR

    (tmp_path / "rubrics").mkdir()
    mine = tmp_path / "rubrics" / "mine.jinja"
    mine.write_text((BUILTIN_DIR / "default.jinja").read_text())
    url, _ = server(batch_seconds=0.3)
    wired = batch_wired(url, templates_dir=tmp_path)
    drafted(wired, "ds", ROWS[:3])
    batch_id = plan_judge(wired, rubric="mine")
    provider_jobs.start(wired, batch_id)
    with wired.uow() as uow:
        asked = uow.batches.get(batch_id).params["judge"]["rubric_hash"]
    mine.write_text(mine.read_text() + "\n")  # edited while the job runs: its answers are paid for all the same
    drive(wired, batch_id)
    found = judgements(wired, "ds")
    assert len(found) == 3 and {(j.rubric_name, j.rubric_hash, j.error) for j in found.values()} == {
        ("mine", asked, None)}

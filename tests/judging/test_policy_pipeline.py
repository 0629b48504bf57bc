"""generate --judge --policy: judgements stored per draft, policy decisions in the audit trail, the
follow-up held while drafts are pending and fired exactly once (when none remain, or on release)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from judging import gate
from storage.models import Draft, Judgement, ReviewEvent
from tests.judging.conftest import generate, make_policy, seed
from workers import monitor


def _status(wired):
    cols = (Draft.record_id, Draft.id, Draft.version, Draft.status, Draft.reviewer, Draft.review_note)
    with wired.uow() as uow:
        return {d.record_id: d for d in uow.session.execute(select(*cols).where(Draft.is_current.is_(True)))}


def test_policy_decides_judged_drafts_with_audit_and_reasons(wired):
    ids = seed(wired, scores=(5, 1, 3))
    spec = make_policy(wired)
    generate(wired, policy="strict")
    drafts = _status(wired)
    assert [drafts[i].status for i in ids] == ["approved", "rejected", "pending"]
    rejected = drafts[ids[1]]
    assert rejected.reviewer == spec.reviewer and spec.reviewer.startswith("policy:strict@")
    assert "reasoning_soundness 1/5" in rejected.review_note and "[[judge:N]]" in rejected.review_note
    with wired.uow() as uow:
        events = uow.session.execute(select(ReviewEvent.draft_id, ReviewEvent.action, ReviewEvent.reviewer)
                                     .order_by(ReviewEvent.id)).all()
        judgements = uow.session.execute(select(Judgement.backend, Judgement.scores, Judgement.overall)
                                         .order_by(Judgement.draft_id)).all()
    assert sorted((e.draft_id, e.action, e.reviewer) for e in events) == [
        (drafts[ids[0]].id, "approve", spec.reviewer), (drafts[ids[1]].id, "reject", spec.reviewer)]
    assert len(judgements) == 3 and {j.backend for j in judgements} == {"fake"}
    assert all(set(j.scores) == {"reasoning_soundness", "answer_english_consistent"} for j in judgements)
    assert [j.overall for j in judgements] == [5.0, 1.0, 3.0]
    # A policy decision resets like any other.
    from review import service

    with wired.uow() as uow:
        service.reset(uow, drafts[ids[0]].id, drafts[ids[0]].version, "alice")
        uow.commit()
    assert _status(wired)[ids[0]].status == "pending"


def test_a_draft_is_never_judged_twice_by_the_same_judge_and_rubric(wired):
    seed(wired, scores=(5, 4))
    generate(wired)
    from judging.plan import JudgeRequest, plan_judge_batch
    from workers.inprocess import run_here

    planned = plan_judge_batch(wired, JudgeRequest(dataset="ds", backend="fake", where="status=pending"))
    outcomes = run_here(wired, planned.batch_id)
    assert sum(o.stats.skipped for o in outcomes if o.stats) == 2
    with wired.uow() as uow:
        assert uow.session.scalar(select(func.count()).select_from(Judgement)) == 2
        assert uow.batches.get(planned.batch_id).status == "done"


def test_followup_waits_for_review_then_fires_once_when_none_pending(wired, followups):
    ids = seed(wired, scores=(5, 3))
    make_policy(wired)
    batch_id = generate(wired, policy="strict", then="build")
    assert followups == []  # one draft is left for people: never a build from older approvals
    summary = monitor.batch_summary(wired, batch_id)
    assert summary["status"] == "done" and summary["waiting_for_review"] == 1
    from review import service

    pending = _status(wired)[ids[1]]
    assert gate.release_ready(wired) == []  # still pending
    with wired.uow() as uow:
        service.approve(uow, pending.id, pending.version, "alice")
        uow.commit()
    assert gate.release_ready(wired) == [(batch_id, "build")]
    assert gate.release_ready(wired) == [] and gate.release(wired, batch_id) is None
    assert followups == [(batch_id, "build")]
    assert monitor.batch_summary(wired, batch_id)["waiting_for_review"] == 0


def test_release_fires_a_held_followup_once_with_drafts_still_pending(wired, followups):
    seed(wired, scores=(5, 3, 3))
    make_policy(wired)
    batch_id = generate(wired, policy="strict", then="train")
    assert followups == []
    assert gate.release(wired, batch_id) == (batch_id, "train")
    assert gate.release(wired, batch_id) is None
    assert gate.release_ready(wired) == []
    assert followups == [(batch_id, "train")]


def test_followup_fires_at_once_when_the_policy_decides_everything(wired, followups):
    seed(wired, scores=(5, 1))
    make_policy(wired)
    batch_id = generate(wired, policy="strict", then="build")
    assert followups == [(batch_id, "build")]
    assert monitor.batch_summary(wired, batch_id)["waiting_for_review"] == 0


def test_policy_needs_a_judge_and_a_known_name(wired):
    seed(wired, scores=(5,))
    from judging.plan import judge_params

    with pytest.raises(LookupError, match="No policy named 'nope'"):
        judge_params(wired, "fake", policy="nope")
    make_policy(wired)
    with pytest.raises(ValueError, match="add --judge"):
        judge_params(wired, None, policy="strict")
    with pytest.raises(ValueError, match="reject-max < --approve-min"):
        make_policy(wired, name="bad", approve_min=2, reject_max=3)

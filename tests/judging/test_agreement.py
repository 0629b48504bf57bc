"""Spot checks and trust: a reproducible (stratified) sample of policy decisions, people's verdicts on it, and
the confusion matrix and Cohen's kappa on a constructed case whose kappa is known."""

from __future__ import annotations

from sqlalchemy import select

from review.agreement import agreement
from review.sampling import sample_ids, verdict
from storage.models import Draft, Record, ReviewEvent
from tests.helpers import add_records
from tests.judging.conftest import generate, make_policy


def _seed_ten(wired):
    rows = [{"key": f"r{i}", "lang": "ja" if i % 2 else "en", "field": "math" if i < 4 else "qa",
             "instruction": f"Question {i} [[judge:{5 if i < 5 else 1}]]", "output": f"answer {i}"}
            for i in range(10)]
    with wired.uow() as uow:
        add_records(uow, "ds", rows)
    make_policy(wired)
    generate(wired, policy="strict", chunk_size=5)


def _drafts(wired):
    with wired.uow() as uow:
        return {k: (i, v, s) for k, i, v, s in uow.session.execute(
            select(Record.key, Draft.id, Draft.version, Draft.status).join(Record, Record.id == Draft.record_id))}


def test_agreement_confusion_matrix_and_known_kappa(wired):
    _seed_ten(wired)
    drafts = _drafts(wired)
    assert [drafts[f"r{i}"][2] for i in range(10)] == ["approved"] * 5 + ["rejected"] * 5
    # People: agree on 4 approvals and 4 rejections, overturn one of each.
    person = {f"r{i}": "approve" for i in range(4)} | {"r4": "reject", "r5": "approve"} | \
             {f"r{i}": "reject" for i in range(6, 10)}
    with wired.uow() as uow:
        for key, action in person.items():
            draft_id, version, _ = drafts[key]
            verdict(uow, draft_id, version, action, "alice", note="wrong" if action == "reject" else None)
        uow.commit()
        report = agreement(uow, "strict")
    # p_o = 8/10, p_e = (5*5 + 5*5)/100 = 0.5, kappa = (0.8 - 0.5) / 0.5 = 0.6
    assert report["n"] == 10 and report["agree"] == 8 and report["kappa"] == 0.6
    assert report["matrix"] == {"person_approve": {"policy_approve": 4, "policy_reject": 1},
                                "person_reject": {"policy_approve": 1, "policy_reject": 4}}
    # en: r0 r2 r4 r6 r8 -> pairs (a,a) (a,a) (r,a) (r,r) (r,r): p_o .8, p_e (2*3+3*2)/25 = .48, kappa .6154
    assert report["by_lang"]["en"]["n"] == 5 and report["by_lang"]["en"]["kappa"] == 0.6154
    assert report["by_lang"]["ja"]["agree"] == 4
    with wired.uow() as uow:  # the person's agreement is on record as their own decision
        events = uow.session.execute(select(ReviewEvent.action, ReviewEvent.reviewer)
                                     .where(ReviewEvent.draft_id == drafts["r0"][0]).order_by(ReviewEvent.id)).all()
    assert [e.action for e in events] == ["approve", "reset", "approve"] and events[-1].reviewer == "alice"


def test_sample_is_reproducible_and_stratified(wired):
    _seed_ten(wired)
    with wired.uow() as uow:
        first = sample_ids(uow, 4, stratify=["lang"], seed=7)
        again = sample_ids(uow, 4, stratify=["lang"], seed=7)
        other = sample_ids(uow, 4, stratify=["lang"], seed=8)
        langs = dict(uow.session.execute(select(Draft.id, Record.lang).join(Record, Record.id == Draft.record_id))
                     .all())
        everything = sample_ids(uow, 50)
    assert first == again and len(first) == 4 and first != other
    assert sorted(langs[i] for i in first) == ["en", "en", "ja", "ja"]
    assert len(everything) == 10


def test_no_overlap_reports_nothing_to_compare(wired):
    _seed_ten(wired)
    with wired.uow() as uow:
        report = agreement(uow, "strict")
    assert report["n"] == 0 and report["kappa"] is None and report["policy_decided"] == 10

"""Several reviewers per draft: leases, never the same draft twice, consensus or adjudication, agreement figures."""

from __future__ import annotations

from review import assignments
from tests.review.conftest import draft


def require(web_wired, n: int) -> None:  # type: ignore[no-untyped-def]
    with web_wired.uow() as uow:
        assignments.set_required(uow, "d", n)
        uow.commit()


def vote(client, csrf, draft_id, action, note=None):  # type: ignore[no-untyped-def]
    body = {"action": action, "version": 1, "note": note}
    return client.post(f"/api/drafts/{draft_id}/decision", json=body, headers={"X-CSRF-Token": csrf})


def desk_draft(client) -> int | None:  # type: ignore[no-untyped-def]
    import re

    found = re.search(r'id="desk"[^>]*data-draft-id="(\d*)"', client.get("/desk").text)
    return int(found.group(1)) if found and found.group(1) else None


def test_leases_give_each_draft_to_at_most_n_reviewers_at_once(signed_in, drafts, web_wired):
    require(web_wired, 1)
    (rex, _), (rita, _), (ada, _) = signed_in("rex"), signed_in("rita"), signed_in("ada")
    # Signing in opened each desk: three reviewers, three different drafts, nobody waiting on another.
    held = [desk_draft(c) for c in (rex, rita, ada)]
    assert len(set(held)) == 3 and None not in held
    assert desk_draft(rex) == held[0]  # reloading keeps your own lease


def test_n_agreeing_decisions_settle_the_draft_as_consensus(signed_in, drafts, web_wired):
    require(web_wired, 2)
    (rex, rex_csrf), (rita, rita_csrf) = signed_in("rex"), signed_in("rita")
    target = drafts["en-1"]
    assert desk_draft(rex) == desk_draft(rita) == target
    first = vote(rex, rex_csrf, target, "approve").json()
    assert (first["state"], first["decided"], first["required"]) == ("waiting", 1, 2)
    assert draft(web_wired, target).status == "pending"
    assert vote(rex, rex_csrf, target, "approve").status_code == 400  # not twice
    assert desk_draft(rex) != target  # and never shown to rex again
    second = vote(rita, rita_csrf, target, "approve").json()
    assert second["state"] == "decided"
    settled = draft(web_wired, target)
    assert (settled.status, settled.reviewer) == ("approved", "consensus:rex+rita")


def test_a_third_reviewer_gets_no_place_on_a_two_reviewer_draft(signed_in, drafts, web_wired):
    require(web_wired, 2)
    (rex, _), (rita, _), (ada, ada_csrf) = signed_in("rex"), signed_in("rita"), signed_in("ada")
    target = drafts["en-1"]
    assert desk_draft(rex) == desk_draft(rita) == target
    assert desk_draft(ada) != target
    refused = vote(ada, ada_csrf, target, "approve")
    assert refused.status_code == 400 and "not yours to decide" in refused.json()["detail"]


def test_disagreement_goes_to_adjudication_then_agreement_is_reported(signed_in, drafts, web_wired):
    require(web_wired, 2)
    (rex, rex_csrf), (rita, rita_csrf) = signed_in("rex"), signed_in("rita")
    a, b = drafts["en-1"], drafts["en-2"]
    vote(rex, rex_csrf, a, "approve")
    vote(rita, rita_csrf, a, "reject", "wrong")
    r = vote(rita, rita_csrf, b, "approve")
    assert r.json()["state"] == "waiting", r.text
    assert vote(rex, rex_csrf, b, "approve").json()["state"] == "decided"
    ada, ada_csrf = signed_in("ada")  # after the votes: her desk takes a place on a draft too
    queue = ada.get("/api/adjudication").json()
    assert [q["draft_id"] for q in queue] == [a]
    assert rex.get("/api/adjudication").status_code == 403
    settled = ada.post(f"/api/drafts/{a}/adjudicate", json={"action": "reject", "version": 1, "note": "agree: wrong"},
                       headers={"X-CSRF-Token": ada_csrf})
    assert settled.status_code == 200 and draft(web_wired, a).status == "rejected"
    figures = rex.get("/api/agreement").json()
    pair = figures["pairs"][0]
    assert (pair["a"], pair["b"], pair["items"], pair["agreement"]) == ("rex", "rita", 2, 0.5)
    assert figures["overall"]["items"] == 2 and figures["overall"]["raters_per_item"] == 2


def test_undo_withdraws_an_independent_decision(signed_in, drafts, web_wired):
    require(web_wired, 2)
    rex, csrf = signed_in("rex")
    vote(rex, csrf, drafts["en-1"], "approve")
    assert rex.post("/api/undo", headers={"X-CSRF-Token": csrf}).json() == {"draft_id": drafts["en-1"]}
    with web_wired.uow() as uow:
        assert assignments.decisions(uow, drafts["en-1"]) == []
    assert vote(rex, csrf, drafts["en-1"], "reject", "changed my mind").json()["state"] == "waiting"


def test_bulk_refuses_datasets_that_need_several_reviewers(signed_in, drafts, web_wired):
    require(web_wired, 2)
    rex, csrf = signed_in("rex")
    r = rex.post("/api/bulk/preview", json={"action": "approve"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 400 and "d (2)" in r.json()["detail"]


def test_agreement_page_shows_people_against_the_judge_policy(signed_in, drafts, web_wired):
    from review import service

    with web_wired.uow() as uow:  # the policy approved two drafts; a person spot-checked both, disagreeing once
        service.approve(uow, drafts["en-1"], 1, "policy:strict@abc")
        service.approve(uow, drafts["en-2"], 1, "policy:strict@abc")
        service.reject(uow, drafts["en-2"], 2, "rex", "misses the point")
        service.reset(uow, drafts["en-1"], 2, "rex")
        service.approve(uow, drafts["en-1"], 3, "rex")
        uow.commit()
    rex, _ = signed_in("rex")
    figures = rex.get("/api/agreement").json()["people_vs_policy"]
    assert (figures["n"], figures["agree"]) == (2, 1)
    page = rex.get("/agreement").text
    assert "2 drafts decided by both a person and a policy: 1 agree" in page

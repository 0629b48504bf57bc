"""The desk's API on PostgreSQL: decisions, conflicts with both versions, undo, bulk by filter, keyset pages."""

from __future__ import annotations

from tests.review.conftest import draft, events


def decide(client, csrf, draft_id, **body):  # type: ignore[no-untyped-def]
    return client.post(f"/api/drafts/{draft_id}/decision", json=body, headers={"X-CSRF-Token": csrf})


def test_approve_reject_edit_then_history_names_the_reviewer(signed_in, drafts, web_wired):
    rex, csrf = signed_in("rex")
    ok = decide(rex, csrf, drafts["en-1"], action="approve", version=1)
    assert ok.status_code == 200 and ok.json()["version"] == 2
    assert draft(web_wired, drafts["en-1"]).status == "approved"
    assert draft(web_wired, drafts["en-1"]).reviewer == "rex"
    no_note = decide(rex, csrf, drafts["ja-1"], action="reject", version=1)
    assert no_note.status_code == 400 and "needs a note" in no_note.json()["detail"]
    assert decide(rex, csrf, drafts["ja-1"], action="reject", version=1, note="wrong language").status_code == 200
    edited = decide(rex, csrf, drafts["zh-1"], action="edit", version=1, changes={"response": "Better answer."})
    assert edited.status_code == 200
    assert draft(web_wired, drafts["zh-1"]).response == "Better answer."
    assert [e.action for e in events(web_wired, drafts["zh-1"])] == ["edit"]


def test_stale_decision_is_a_conflict_with_both_versions_and_overwrites_nothing(signed_in, drafts, web_wired):
    rex, rex_csrf = signed_in("rex")
    rita, rita_csrf = signed_in("rita")
    assert decide(rita, rita_csrf, drafts["en-1"], action="edit", version=1,
                  changes={"reasoning": "Rita's reasoning"}).status_code == 200
    stale = decide(rex, rex_csrf, drafts["en-1"], action="edit", version=1, changes={"reasoning": "Rex's reasoning"})
    assert stale.status_code == 409
    body = stale.json()
    assert body["conflict"] is True
    assert body["yours"]["changes"]["reasoning"] == "Rex's reasoning"
    assert body["current"]["reasoning"] == "Rita's reasoning" and body["current"]["version"] == 2
    assert draft(web_wired, drafts["en-1"]).reasoning == "Rita's reasoning"


def test_undo_takes_back_the_last_decision_only_once(signed_in, drafts, web_wired):
    rex, csrf = signed_in("rex")
    decide(rex, csrf, drafts["en-1"], action="approve", version=1)
    undone = rex.post("/api/undo", headers={"X-CSRF-Token": csrf})
    assert undone.status_code == 200 and undone.json() == {"draft_id": drafts["en-1"]}
    assert draft(web_wired, drafts["en-1"]).status == "pending"
    again = rex.post("/api/undo", headers={"X-CSRF-Token": csrf})
    assert again.status_code == 400 and "nothing to undo" in again.json()["detail"]


def test_undo_of_an_edit_restores_the_text(signed_in, drafts, web_wired):
    rex, csrf = signed_in("rex")
    before = draft(web_wired, drafts["en-1"]).reasoning
    decide(rex, csrf, drafts["en-1"], action="edit", version=1, changes={"reasoning": "changed"})
    assert rex.post("/api/undo", headers={"X-CSRF-Token": csrf}).status_code == 200
    assert draft(web_wired, drafts["en-1"]).reasoning == before


def test_undo_refuses_when_someone_changed_the_draft_since(signed_in, drafts):
    rex, rex_csrf = signed_in("rex")
    rita, rita_csrf = signed_in("rita")
    decide(rex, rex_csrf, drafts["en-1"], action="approve", version=1)
    decide(rita, rita_csrf, drafts["en-1"], action="reject", version=2, note="no")
    refused = rex.post("/api/undo", headers={"X-CSRF-Token": rex_csrf})
    assert refused.status_code == 400 and "changed after your decision" in refused.json()["detail"]


def test_bulk_previews_then_applies_and_refuses_a_changed_count(signed_in, drafts, web_wired):
    rex, csrf = signed_in("rex")
    headers = {"X-CSRF-Token": csrf}
    preview = rex.post("/api/bulk/preview", json={"action": "approve", "lang": "en"}, headers=headers)
    assert preview.json() == {"count": 2}  # en-1, en-2 (en-bad failed)
    stale = rex.post("/api/bulk", json={"action": "approve", "lang": "en", "expected": 3}, headers=headers)
    assert stale.status_code == 400 and "preview again" in stale.json()["detail"]
    assert draft(web_wired, drafts["en-1"]).status == "pending"
    done = rex.post("/api/bulk", json={"action": "approve", "lang": "en", "expected": 2}, headers=headers)
    assert done.json()["applied"] == 2
    assert {draft(web_wired, drafts[k]).status for k in ("en-1", "en-2")} == {"approved"}
    assert draft(web_wired, drafts["ja-1"]).status == "pending"


def test_queue_pages_by_keyset_with_filters(signed_in, drafts):
    rex, _ = signed_in("rex")
    first = rex.get("/api/drafts", params={"limit": 2}).json()
    assert [d["id"] for d in first["items"]] == sorted(d["id"] for d in first["items"])
    assert first["next_after"] == first["items"][-1]["id"]
    rest = rex.get("/api/drafts", params={"limit": 2, "after": first["next_after"]}).json()
    ids = [d["id"] for d in first["items"] + rest["items"]]
    assert len(ids) == len(set(ids)) == 4  # four pending drafts, none twice
    flagged = rex.get("/api/drafts", params={"flag": "lang_mismatch"}).json()["items"]
    assert [d["id"] for d in flagged] == [drafts["en-2"]]
    ja = rex.get("/api/drafts", params={"lang": "ja"}).json()["items"]
    assert [d["record"]["instruction"] for d in ja] == ["二たす二は？"]
    assert rex.get("/api/drafts", params={"status": "bogus"}).status_code == 400


def test_queue_filters_by_judge_score_range(signed_in, drafts, web_wired):
    from tests.web.judged import add_judgement

    add_judgement(web_wired, drafts["ja-1"], 2.5)
    add_judgement(web_wired, drafts["zh-1"], 4.5)
    rex, _ = signed_in("rex")
    low = rex.get("/api/drafts", params={"score_max": 3}).json()["items"]
    assert [d["id"] for d in low] == [drafts["ja-1"]]
    high = rex.get("/api/drafts", params={"score_min": 4, "score_max": 5}).json()["items"]
    assert [d["id"] for d in high] == [drafts["zh-1"]]
    assert "never translates" in rex.get("/desk", params={"score_max": 3}).text

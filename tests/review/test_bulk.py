"""Filters (the --where language) and decisions over many drafts."""

import pytest

from sqlalchemy import update

from review import bulk, service
from review.filters import parse_filter
from review.rules import ConflictError, IllegalTransitionError, InvalidEditError
from storage.models import Draft
from storage.repositories.reviews import DraftFilter
from tests.review.conftest import draft, events, make_drafts, set_status


def test_where_text_and_options_become_one_filter():
    flt = parse_filter("lang=en, flags=none,is_fake=false", status="pending", lang=None, dataset="d")
    assert flt == DraftFilter(status="pending", dataset="d", lang="en", no_flags=True, is_fake=False)
    assert parse_filter("flag=lang_mismatch,field=math,uniqueness=low") == DraftFilter(
        flag="lang_mismatch", field="math", uniqueness="low")
    assert parse_filter(None, flag="none") == DraftFilter(no_flags=True)


@pytest.mark.parametrize(
    ("where", "message"),
    [("colour=red", "unknown filter 'colour'"), ("status=done", "unknown status 'done'"),
     ("flags=x", "use flags=none"), ("is_fake=maybe", "use true or false"), ("lang", "expected name=value")],
)
def test_bad_filters_say_what_is_wrong(where, message):
    with pytest.raises(ValueError, match=message):
        parse_filter(where)


def _ids(wired, where, **options):  # type: ignore[no-untyped-def]
    with wired.uow() as uow:
        return [row.draft.id for row in uow.reviews.find(parse_filter(where, **options))]


def test_each_filter_selects_the_right_drafts(wired, drafts):
    other = make_drafts(wired, dataset="other", rows=[{"key": "o-1", "lang": "ja", "instruction": "別", "output": "x"}])
    d = drafts
    assert _ids(wired, "lang=en") == [d["en-1"], d["en-2"], d["en-bad"]]
    assert _ids(wired, "lang=en,flags=none") == [d["en-1"], d["en-bad"]]
    assert _ids(wired, "flag=lang_mismatch") == [d["en-2"]]
    assert _ids(wired, "flag=other_flag") == []
    assert _ids(wired, "status=failed") == [d["en-bad"]]
    assert _ids(wired, "field=ml") == [d["en-2"], d["zh-1"]]
    assert _ids(wired, "uniqueness=high") == [d["en-2"]]
    assert _ids(wired, "dataset=other") == [other["o-1"]]
    assert _ids(wired, "is_fake=true,lang=ja") == [d["ja-1"], other["o-1"]]
    assert _ids(wired, "is_fake=false") == []


def test_bulk_approve_takes_pending_drafts_matching_the_filter(wired, drafts):
    set_status(wired, drafts["ja-1"], "rejected")
    result = bulk.bulk_decide(wired.uow, parse_filter("flags=none"), "approve", "alice")
    # en-2 is flagged, ja-1 is rejected (not pending), en-bad failed: all left alone.
    assert sorted(result.applied) == sorted([drafts["en-1"], drafts["zh-1"]])
    assert result.failed == []
    assert [draft(wired, i).status for i in (drafts["en-1"], drafts["zh-1"], drafts["ja-1"], drafts["en-2"])] == [
        "approved", "approved", "rejected", "pending"]
    assert [e.action for e in events(wired, drafts["en-1"])] == ["approve"]


def test_bulk_dry_run_lists_and_changes_nothing(wired, drafts):
    result = bulk.bulk_decide(wired.uow, parse_filter("lang=en"), "approve", "alice", dry_run=True)
    assert (result.planned, result.applied) == ([drafts["en-1"], drafts["en-2"]], [])
    assert draft(wired, drafts["en-1"]).status == "pending"


def test_bulk_reject_needs_a_note(wired, drafts):
    with pytest.raises(InvalidEditError, match="rejecting drafts needs a note"):
        bulk.bulk_decide(wired.uow, parse_filter("lang=zh"), "reject", "alice")
    assert draft(wired, drafts["zh-1"]).status == "pending"
    result = bulk.bulk_decide(wired.uow, parse_filter("lang=zh"), "reject", "alice", note="Answer in English.")
    assert result.applied == [drafts["zh-1"]]
    assert draft(wired, drafts["zh-1"]).review_note == "Answer in English."
    [event] = events(wired, drafts["zh-1"])
    assert (event.action, event.reviewer, event.note, event.before, event.after) == (
        "reject", "alice", "Answer in English.", {"status": "pending", "review_note": None},
        {"status": "rejected", "review_note": "Answer in English."})


def test_bulk_refuses_a_status_the_action_cannot_start_from(wired, drafts):
    with pytest.raises(ValueError, match="cannot approve failed drafts"):
        bulk.bulk_decide(wired.uow, parse_filter("status=failed"), "approve", "alice")


def test_bulk_reports_drafts_that_changed_after_they_were_selected(wired, drafts, monkeypatch):
    real = bulk._apply

    def others_first(uow_factory, part, *args):  # type: ignore[no-untyped-def]
        # Between selection and update, bob rejects en-1 and zh-1 is regenerated (superseded).
        with wired.uow() as other:
            service.reject(other, drafts["en-1"], 1, "bob", note="no")
            other.commit()
        with wired.uow() as other:
            other.session.execute(update(Draft).where(Draft.id == drafts["zh-1"]).values(is_current=False))
            other.commit()
        return real(uow_factory, part, *args)

    monkeypatch.setattr(bulk, "_apply", others_first)
    result = bulk.bulk_decide(wired.uow, parse_filter("flags=none"), "approve", "alice")
    assert [(i, type(e)) for i, e in result.failed] == [
        (drafts["en-1"], ConflictError), (drafts["zh-1"], IllegalTransitionError)]
    assert "version 1 -> 2 by bob" in str(result.failed[0][1])
    assert result.applied == [drafts["ja-1"]]
    assert draft(wired, drafts["en-1"]).status == "rejected"  # bob's decision stands
    assert draft(wired, drafts["zh-1"]).status == "pending"
    assert draft(wired, drafts["ja-1"]).status == "approved"


def test_bulk_commits_in_chunks_and_checks_each_draft(wired, drafts, monkeypatch):
    monkeypatch.setattr(bulk, "COMMIT_EVERY", 2)
    result = bulk.bulk_decide(wired.uow, parse_filter(None), "approve", "alice")
    assert result.applied == [drafts[k] for k in ("en-1", "en-2", "ja-1", "zh-1")] and result.failed == []
    assert all(len(events(wired, i)) == 1 for i in result.applied)
    assert draft(wired, drafts["en-bad"]).status == "failed"


def test_auto_approves_only_unflagged_pending_drafts(wired, drafts):
    planned = bulk.auto_approve(wired.uow, DraftFilter(), "alice", dry_run=True)
    assert planned.planned == [drafts["en-1"], drafts["ja-1"], drafts["zh-1"]] and planned.applied == []
    assert draft(wired, drafts["en-1"]).status == "pending"
    done = bulk.auto_approve(wired.uow, parse_filter("lang=ja"), "alice")
    assert done.applied == [drafts["ja-1"]]
    [event] = events(wired, drafts["ja-1"])
    assert (event.action, event.to_status) == ("auto-approve", "approved")
    assert draft(wired, drafts["en-2"]).status == "pending"

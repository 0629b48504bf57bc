"""Single decisions: notes, edit validation, the audit trail, stale versions, reviewer names."""

import getpass

import pytest

from review import service
from review.rules import ConflictError, InvalidEditError
from tests.review.conftest import draft, events


def _decide(wired, draft_id, version, action, **kwargs):  # type: ignore[no-untyped-def]
    with wired.uow() as uow:
        new = service.decide(uow, draft_id, version, action, kwargs.pop("reviewer", "alice"), **kwargs)
        uow.commit()
    return new


def test_rejection_keeps_its_note_on_the_draft_for_regeneration(wired, drafts):
    _decide(wired, drafts["ja-1"], 1, "reject", note="  The answer ignores the input.  ")
    after = draft(wired, drafts["ja-1"])
    assert (after.status, after.review_note) == ("rejected", "The answer ignores the input.")
    [event] = events(wired, drafts["ja-1"])
    assert (event.note, event.before, event.after) == (
        "The answer ignores the input.",
        {"status": "pending", "review_note": None},
        {"status": "rejected", "review_note": "The answer ignores the input."},
    )


@pytest.mark.parametrize("note", [None, "", "   "])
def test_rejection_without_a_note_is_refused(wired, drafts, note):
    with pytest.raises(InvalidEditError, match="needs a note"):
        _decide(wired, drafts["en-1"], 1, "reject", note=note)
    assert draft(wired, drafts["en-1"]).status == "pending"


def test_edit_records_the_text_before_and_after(wired, drafts):
    old = draft(wired, drafts["zh-1"]).reasoning
    assert _decide(wired, drafts["zh-1"], 1, "edit", changes={"reasoning": "更好的推理。\nStep 2.", "response": old and
                   draft(wired, drafts["zh-1"]).response}) == 2
    after = draft(wired, drafts["zh-1"])
    assert (after.reasoning, after.edited, after.status) == ("更好的推理。\nStep 2.", True, "pending")
    [event] = events(wired, drafts["zh-1"])
    # Only what changed is recorded: the unchanged response is not in the event.
    assert event.before == {"edited": False, "reasoning": old}
    assert event.after == {"edited": True, "reasoning": "更好的推理。\nStep 2."}


def test_changed_text_with_an_approval_is_an_edit_then_an_approval(wired, drafts):
    assert _decide(wired, drafts["en-1"], 1, "approve", changes={"response": "Four (4)."}) == 3
    after = draft(wired, drafts["en-1"])
    assert (after.status, after.edited, after.response, after.version) == ("approved", True, "Four (4).", 3)
    assert [(e.action, e.from_status, e.to_status) for e in events(wired, drafts["en-1"])] == [
        ("edit", "pending", "pending"), ("approve", "pending", "approved")]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"reasoning": "  "}, "reasoning of draft .* must not be empty"),
        ({"response": ""}, "response of draft .* must not be empty"),
        ({"status": "approved"}, "'status' cannot be edited"),
        ({"review_note": "x"}, "'review_note' cannot be edited"),
        ({"reasoning": 3}, "reasoning must be text"),
        ({"reasoning": draft}, "reasoning must be text"),
    ],
)
def test_invalid_edits_are_refused_and_change_nothing(wired, drafts, changes, message):
    with pytest.raises(InvalidEditError, match=message):
        _decide(wired, drafts["ja-1"], 1, "edit", changes=changes)
    assert (draft(wired, drafts["ja-1"]).version, events(wired, drafts["ja-1"])) == (1, [])


def test_transformed_input_may_be_empty_only_when_the_record_has_no_input(wired, drafts):
    # en-1 has no input: nothing to transform. ja-1's input is the Japanese text itself.
    _decide(wired, drafts["en-1"], 1, "edit", changes={"transformed_input": "", "reasoning": "Two and two."})
    with pytest.raises(InvalidEditError, match="transformed_input .* must not be empty"):
        _decide(wired, drafts["ja-1"], 1, "edit", changes={"transformed_input": " "})


def test_an_edit_that_changes_nothing_is_refused(wired, drafts):
    same = draft(wired, drafts["ja-1"]).reasoning
    with pytest.raises(InvalidEditError, match="changes nothing"):
        _decide(wired, drafts["ja-1"], 1, "edit", changes={"reasoning": same + "\n"})


def test_a_stale_version_is_a_conflict_naming_who_changed_it(wired, drafts):
    _decide(wired, drafts["en-1"], 1, "approve", reviewer="alice")
    with pytest.raises(ConflictError) as caught:
        _decide(wired, drafts["en-1"], 1, "reject", reviewer="bob", note="no")
    message = str(caught.value)
    assert message.startswith(f"draft {drafts['en-1']} changed since you loaded it (version 1 -> 2 by alice at ")
    assert message.endswith(f"reload with reasongen review show {drafts['en-1']}")
    after = draft(wired, drafts["en-1"])
    assert (after.status, after.version, len(events(wired, drafts["en-1"]))) == ("approved", 2, 1)


def test_reviewer_name_prefers_the_option_then_settings_then_login():
    assert service.reviewer_name("alice", "bob") == "alice"
    assert service.reviewer_name(None, "bob") == "bob"
    assert service.reviewer_name(None, None) == getpass.getuser()


def test_history_lists_every_change_in_order(wired, drafts):
    draft_id = drafts["zh-1"]
    _decide(wired, draft_id, 1, "reject", reviewer="alice", note="too short")
    _decide(wired, draft_id, 2, "reset", reviewer="bob")
    _decide(wired, draft_id, 3, "approve", reviewer="carol", note="fine now")
    with wired.uow() as uow:
        history = service.history(uow, draft_id)
    assert [(e.reviewer, e.action, e.from_status, e.to_status, e.note) for e in history] == [
        ("alice", "reject", "pending", "rejected", "too short"),
        ("bob", "reset", "rejected", "pending", None),
        ("carol", "approve", "pending", "approved", "fine now"),
    ]
    assert history[0].created_at <= history[1].created_at <= history[2].created_at
    assert draft(wired, draft_id).review_note == "fine now"

"""Every review action from every status: legal ones change the draft and write one event, the rest
are refused without writing anything."""

import pytest

from review import service
from review.rules import IllegalTransitionError
from tests.review.conftest import draft, events, set_status

# action -> {from status: to status}; a status missing here must be refused.
LEGAL = {
    "approve": {"pending": "approved", "rejected": "approved"},
    "auto-approve": {"pending": "approved"},
    "reject": {"pending": "rejected", "approved": "rejected"},
    "reset": {"approved": "pending", "rejected": "pending"},
    "edit": {"pending": "pending", "approved": "approved", "rejected": "rejected"},
}
STATUSES = ["pending", "approved", "rejected", "failed"]


def _attempt(wired, draft_id, action):  # type: ignore[no-untyped-def]
    changes = {"reasoning": "Reviewed reasoning."} if action == "edit" else None
    with wired.uow() as uow:
        version = service.decide(uow, draft_id, 1, action, "alice", note="because", changes=changes)
        uow.commit()
    return version


@pytest.mark.parametrize("action", sorted(LEGAL))
def test_each_action_from_each_status(wired, drafts, action):
    # One draft per status: the failed one is the draft whose generation really failed.
    by_status = {"pending": drafts["en-1"], "approved": drafts["ja-1"], "rejected": drafts["zh-1"],
                 "failed": drafts["en-bad"]}
    set_status(wired, by_status["approved"], "approved")
    set_status(wired, by_status["rejected"], "rejected")
    for status in STATUSES:
        draft_id = by_status[status]
        if status in LEGAL[action]:
            assert _attempt(wired, draft_id, action) == 2
            after = draft(wired, draft_id)
            assert (after.status, after.version, after.reviewer) == (LEGAL[action][status], 2, "alice")
            [event] = events(wired, draft_id)
            assert (event.action, event.from_status, event.to_status) == (action, status, LEGAL[action][status])
            assert after.edited is (action == "edit")
        else:
            with pytest.raises(IllegalTransitionError, match=f"cannot {action} draft {draft_id}"):
                _attempt(wired, draft_id, action)
            after = draft(wired, draft_id)
            assert (after.status, after.version, events(wired, draft_id)) == (status, 1, [])


def test_failed_draft_is_refused_with_the_reason(wired, drafts):
    with wired.uow() as uow, pytest.raises(IllegalTransitionError, match="generation failed; regenerate"):
        service.approve(uow, drafts["en-bad"], 1, "alice")


def test_repeating_a_decision_says_it_is_already_done(wired, drafts):
    with wired.uow() as uow:
        service.approve(uow, drafts["en-1"], 1, "alice")
        uow.commit()
    with wired.uow() as uow, pytest.raises(IllegalTransitionError, match="already approved"):
        service.approve(uow, drafts["en-1"], 2, "alice")


def test_a_superseded_draft_is_history_and_cannot_be_decided(wired, drafts):
    from generation.backends import create_backend
    from generation.run import generate_drafts
    from generation.templates import load_template

    with wired.uow() as uow:  # regenerate ja-1 (as the rebuild does after a rejection)
        record_id = uow.reviews.load(drafts["ja-1"]).record.id
    generate_drafts(wired.uow, [record_id], create_backend("fake", wired.settings), load_template(), force=True)
    with wired.uow() as uow, pytest.raises(IllegalTransitionError, match="replaced by a newer draft of its record"):
        service.approve(uow, drafts["ja-1"], 1, "alice")
    assert draft(wired, drafts["ja-1"]).status == "pending"

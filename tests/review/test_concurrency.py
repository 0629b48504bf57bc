"""Two reviewers on the same draft: one wins, the other gets a conflict, and nothing is lost."""

import threading
import time

import pytest
from sqlalchemy import text

from reasongen.bootstrap import bootstrap
from reasongen.settings import Settings
from review import service
from review.rules import ConflictError
from tests.review.conftest import draft, events, make_drafts


def test_two_reviewers_editing_from_the_same_version(wired, drafts):
    draft_id = drafts["ja-1"]
    with wired.uow() as uow:  # both load version 1
        alice_sees = service.load(uow, draft_id)
        bob_sees = service.load(uow, draft_id)
    with wired.uow() as uow:
        service.edit(uow, draft_id, alice_sees.draft.version, "alice", {"reasoning": "Alice's reasoning."})
        uow.commit()
    with wired.uow() as uow, pytest.raises(ConflictError, match=r"version 1 -> 2 by alice"):
        service.edit(uow, draft_id, bob_sees.draft.version, "bob", {"reasoning": "Bob's reasoning."})
    after = draft(wired, draft_id)
    assert (after.reasoning, after.version, [e.reviewer for e in events(wired, draft_id)]) == (
        "Alice's reasoning.", 2, ["alice"])


def _race(wired, draft_id, actions):  # type: ignore[no-untyped-def]
    """Run each (reviewer, action, kwargs) in its own thread and connection, all from version 1."""
    start = threading.Barrier(len(actions))
    outcomes: dict[str, object] = {}

    def run(reviewer, action, kwargs):  # type: ignore[no-untyped-def]
        start.wait()
        try:
            with wired.uow() as uow:
                outcomes[reviewer] = service.decide(uow, draft_id, 1, action, reviewer, **kwargs)
                uow.commit()
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test checks
            outcomes[reviewer] = exc

    threads = [threading.Thread(target=run, args=a) for a in actions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return outcomes


def test_simultaneous_decisions_let_exactly_one_win(wired, drafts):
    draft_id = drafts["zh-1"]
    outcomes = _race(wired, draft_id, [("alice", "approve", {}), ("bob", "reject", {"note": "wrong"}),
                                       ("carol", "edit", {"changes": {"response": "Carol's answer."}})])
    winners = [name for name, result in outcomes.items() if result == 2]
    losers = [result for result in outcomes.values() if result != 2]
    assert len(winners) == 1 and len(losers) == 2
    assert all(isinstance(e, ConflictError) for e in losers), losers
    [event] = events(wired, draft_id)
    assert (event.reviewer, draft(wired, draft_id).version) == (winners[0], 2)


def _blocked_backends(admin, dbname: str) -> int:  # type: ignore[no-untyped-def]
    sql = text("SELECT count(*) FROM pg_stat_activity WHERE datname = :db AND wait_event_type = 'Lock'")
    with admin.connect() as conn:
        return conn.execute(sql, {"db": dbname}).scalar_one()


def test_a_writer_blocked_on_the_row_gets_a_conflict_when_the_first_commits(drafts_pg):
    """PostgreSQL: bob's UPDATE waits on alice's row lock; when alice commits, bob updates nothing."""
    wired, draft_id = drafts_pg
    admin = bootstrap(wired.settings, check_schema=False)  # a separate engine to watch pg_stat_activity
    bob_result: list[object] = []

    def bob() -> None:
        try:
            with wired.uow() as uow:
                bob_result.append(service.edit(uow, draft_id, 1, "bob", {"reasoning": "Bob's."}))
                uow.commit()
        except ConflictError as exc:
            bob_result.append(exc)

    with wired.uow() as alice:
        service.edit(alice, draft_id, 1, "alice", {"reasoning": "Alice's."})  # holds the row lock
        thread = threading.Thread(target=bob)
        thread.start()
        deadline = time.monotonic() + 30
        while _blocked_backends(admin.engine, admin.engine.url.database) == 0:  # wait until bob is blocked
            assert time.monotonic() < deadline, "bob never blocked on the row lock"
            time.sleep(0.01)
        alice.commit()
    thread.join(timeout=30)
    admin.close()
    assert isinstance(bob_result[0], ConflictError) and "by alice" in str(bob_result[0])
    after = draft(wired, draft_id)
    assert (after.reasoning, after.version, [e.reviewer for e in events(wired, draft_id)]) == (
        "Alice's.", 2, ["alice"])


@pytest.fixture
def drafts_pg(pg_url):  # type: ignore[no-untyped-def]
    wired = bootstrap(Settings(database_url=pg_url, broker_url=None))
    yield wired, make_drafts(wired)["ja-1"]
    wired.close()

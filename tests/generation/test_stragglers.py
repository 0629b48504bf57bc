"""A straggler (one record's request hanging) delays only its own draft: the records done beside it are saved
while it still hangs, a record identical to it gets its copy once it is saved, and its place in the feed gate is
the only one it keeps. Ordering, not timing: the server holds the straggler until the test releases it."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import select, update

from generation.backends.teacher import TeacherBackend
from generation.run import RunStats, generate_drafts
from generation.templates import load_template
from storage.models import Draft, Record
from tests.helpers import add_records
from tests.queue.conftest import wait_for

HANG = "[[stub:hang:once]]"  # the server holds this record's first request until released, then answers


def _release_hung(handle: Any) -> None:
    handle._loop.call_soon_threadsafe(handle.server.hang.set)  # what StubHandle.stop does first


def _saved(wired: Any) -> dict[int, str]:
    with wired.uow() as uow:
        return {r: s for r, s in uow.session.execute(select(Draft.record_id, Draft.status))}


def _teacher(url: str) -> TeacherBackend:
    # A long timeout: the straggler ends when the test releases it, never by timing out.
    return TeacherBackend("stub-model", base_url=url, api_key="test-key-not-secret", timeout_s=120,
                          adaptive=False, concurrency=16)


def test_done_records_are_saved_while_a_straggler_hangs(wired, stub):
    url, handle = stub()
    rows = [{"instruction": f"What is {i} + 1?", "key": f"k{i}"} for i in range(8)]
    rows += [{"instruction": f"Slow question {HANG}", "key": k} for k in ("slow", "twin")]
    with wired.uow() as uow:
        ids = add_records(uow, "ds", rows)
        straggler, twin = ids[-2:]
        same = uow.session.get(Record, straggler).content_hash  # identical content: one request, two drafts
        uow.session.execute(update(Record).where(Record.id == twin).values(content_hash=same))
        uow.commit()
    backend = _teacher(url)
    result: dict[str, RunStats] = {}
    progress: list[int] = []
    runner = threading.Thread(target=lambda: result.update(stats=generate_drafts(
        wired.uow, ids, backend, load_template(), on_progress=lambda s: progress.append(s.done))), daemon=True)
    try:
        runner.start()  # one sub-batch of 10 records (9 requests): the old code saved it only whole
        wait_for(lambda: len(_saved(wired)) >= 8, timeout=60, what="the 8 answered records' drafts")
        saved = _saved(wired)
        assert runner.is_alive() and straggler not in saved and twin not in saved, saved
        assert handle.stats()["in_flight"] == 1  # the straggler is still held by the server
        assert progress and progress[-1] == 8  # progress is reported for the partial save
        _release_hung(handle)
        runner.join(60)
        assert not runner.is_alive()
    finally:
        backend.close()
    saved = _saved(wired)
    assert len(saved) == 10 and set(saved.values()) == {"pending"}, saved
    stats = result["stats"]
    assert (stats.done, stats.failed, stats.shared, stats.sub_batches) == (9, 0, 1, 1)


def test_partial_saves_keep_the_sub_batchs_budget_reservation_until_it_is_saved_whole():
    """Progress is reported for every partial save, but a sub-batch's reservation is released once, when the whole
    sub-batch is saved (it was released per report, so a straggling sub-batch released its neighbours' too)."""
    from workers.fence import Guard

    class Budget:
        released = 0

        def release_one(self) -> None:
            self.released += 1

    guard = Guard(None, None, None, None)  # type: ignore[arg-type]  # progress touches only the budget
    guard.budget = budget = Budget()
    stats = RunStats()
    guard.progress(stats)  # first partial save of sub-batch 1
    guard.progress(stats)  # second partial save
    assert budget.released == 0
    stats.sub_batches = 1
    guard.progress(stats)
    guard.progress(stats)  # a partial save of sub-batch 2
    assert budget.released == 1

"""Exactly-once batch completion when the last chunks close at the same moment (PostgreSQL, real threads)."""

from __future__ import annotations

import threading

from sqlalchemy import select

from reasongen.bootstrap import bootstrap
from reasongen.settings import Settings
from storage.models import Batch
from tests.helpers import add_records
from workers.chunks import claim, close, new_owner
from workers.planning import BatchRequest, plan_batch


def test_followup_handed_out_once_when_completions_race(pg_url):
    wired = bootstrap(Settings(database_url=pg_url, broker_url=None))
    try:
        with wired.uow() as uow:
            add_records(uow, "ds", [{"instruction": f"Q{i}"} for i in range(8)])
        for _ in range(3):
            planned = plan_batch(wired, BatchRequest(dataset="ds", chunk_size=1, then="train"))
            leases = [claim(wired, chunk_id, new_owner()) for chunk_id in planned.chunk_ids]
            start = threading.Barrier(len(leases))
            outcomes: list = []

            def finish(lease) -> None:  # type: ignore[no-untyped-def]
                start.wait()
                outcomes.append(close(wired, lease, None, "done"))

            threads = [threading.Thread(target=finish, args=(lease,)) for lease in leases]
            [t.start() for t in threads]
            [t.join() for t in threads]
            assert [o.state for o in outcomes] == ["done"] * 8
            assert [o.followup for o in outcomes if o.followup] == [(planned.batch_id, "train")]
            with wired.uow() as uow:
                batch = uow.session.scalar(select(Batch).where(Batch.id == planned.batch_id))
                assert batch.status == "done" and batch.followup_enqueued_at is not None
    finally:
        wired.close()


def test_a_duplicate_message_cannot_claim_a_leased_chunk(wired):
    with wired.uow() as uow:
        add_records(uow, "ds", [{"instruction": "Q"}])
    planned = plan_batch(wired, BatchRequest(dataset="ds"))
    first = claim(wired, planned.chunk_ids[0], new_owner())
    assert first is not None and first.attempts == 1
    assert claim(wired, planned.chunk_ids[0], new_owner()) is None
    assert close(wired, first, None, "done").state == "done"
    assert claim(wired, planned.chunk_ids[0], new_owner()) is None  # done stays done

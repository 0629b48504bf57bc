"""`workers` shows, for each live worker, the teacher's adaptive concurrency limit on the batch it is working on."""

from __future__ import annotations

from sqlalchemy import update

from storage.models import Batch
from tests.helpers import add_records
from workers import monitor
from workers.batches import utcnow
from workers.planning import BatchRequest, plan_batch


def test_workers_report_the_limit_of_the_batch_each_worker_is_on(wired):
    with wired.uow() as uow:
        add_records(uow, "ds", [{"instruction": f"Q{i}?", "key": f"k{i}"} for i in range(4)])
    planned = plan_batch(wired, BatchRequest(dataset="ds", backend="fake", chunk_size=2))
    with wired.uow() as uow:
        uow.session.execute(update(Batch).where(Batch.id == planned.batch_id).values(concurrency_limit=7))
        for name, chunk in (("busy", planned.chunk_ids[0]), ("idle", None)):
            uow.heartbeats.beat(name, utcnow(), queues=["teacher"], concurrency=4, pid=1, current_chunk_id=chunk)
        uow.commit()
    found = {w["hostname"]: w for w in monitor.workers_report(wired)["workers"]}
    assert found["busy"]["teacher_limit"] == 7 and found["busy"]["current_chunk"] == planned.chunk_ids[0]
    assert found["idle"]["teacher_limit"] is None

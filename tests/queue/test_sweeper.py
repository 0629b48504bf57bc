"""The sweeper's decisions on expired leases, without workers (the lease is expired by hand)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from storage.models import Batch, Chunk
from tests.helpers import add_records
from workers import batches, sweeper
from workers.batches import utcnow
from workers.chunks import claim, new_owner
from workers.planning import BatchRequest, plan_batch


def leased_then_expired(wired, attempts: int = 1) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    with wired.uow() as uow:
        add_records(uow, "ds", [{"instruction": "Q1"}, {"instruction": "Q2"}])
    planned = plan_batch(wired, BatchRequest(dataset="ds", chunk_size=2))
    chunk_id = planned.chunk_ids[0]
    assert claim(wired, chunk_id, new_owner()) is not None  # ...and its worker dies holding the lease
    with wired.uow() as uow:
        uow.session.execute(update(Chunk).where(Chunk.id == chunk_id)
                            .values(lease_expires_at=utcnow() - timedelta(seconds=1), attempts=attempts))
        uow.commit()
    return planned.batch_id, chunk_id


def state(wired, batch_id: int, chunk_id: int) -> tuple[str, str, bool]:  # type: ignore[no-untyped-def]
    with wired.uow() as uow:
        batch, chunk = uow.session.get(Batch, batch_id), uow.session.get(Chunk, chunk_id)
        return batch.status, chunk.status, batch.finished_at is not None


def test_expired_lease_goes_back_to_the_queue(wired):
    batch_id, chunk_id = leased_then_expired(wired)
    assert sweeper.sweep(wired, send=False).requeued == [chunk_id]
    assert state(wired, batch_id, chunk_id) == ("running", "queued", False)
    assert sweeper.sweep(wired, send=False).requeued == []  # once


def test_expired_lease_on_the_last_attempt_fails_the_chunk_and_finishes_the_batch(wired):
    batch_id, chunk_id = leased_then_expired(wired, attempts=wired.settings.max_attempts)
    assert sweeper.sweep(wired, send=False).failed == [chunk_id]
    assert state(wired, batch_id, chunk_id) == ("failed", "failed", True)


def test_expired_lease_in_a_cancelled_batch_lets_the_batch_finish(wired):
    batch_id, chunk_id = leased_then_expired(wired)
    batches.cancel(wired, batch_id)
    assert state(wired, batch_id, chunk_id) == ("cancelled", "leased", False)  # waiting for the dead worker
    assert sweeper.sweep(wired, send=False).cancelled == [chunk_id]
    assert state(wired, batch_id, chunk_id) == ("cancelled", "cancelled", True)


def test_a_live_lease_is_left_alone(wired):
    with wired.uow() as uow:
        add_records(uow, "ds", [{"instruction": "Q1"}])
    planned = plan_batch(wired, BatchRequest(dataset="ds"))
    claim(wired, planned.chunk_ids[0], new_owner())
    report = sweeper.sweep(wired, send=False)
    assert (report.requeued, report.failed, report.cancelled) == ([], [], [])

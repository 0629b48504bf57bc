"""The sweeper's decisions on expired leases, without workers (the lease is expired by hand)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

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


def _silent_lease(wired, touched: datetime) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """A chunk leased by a worker that is alive (a fresh heartbeat row with the lease's pid) but that no longer
    runs it: its lease heartbeat last touched it at ``touched``. Its lease still has minutes to run."""
    with wired.uow() as uow:
        add_records(uow, "ds", [{"instruction": "Q1"}, {"instruction": "Q2"}])
    planned = plan_batch(wired, BatchRequest(dataset="ds", chunk_size=2))
    chunk_id, owner = planned.chunk_ids[0], new_owner("alive@test")
    assert claim(wired, chunk_id, owner) is not None
    with wired.uow() as uow:
        uow.heartbeats.beat("alive@test", utcnow(), queues=["teacher"], pid=int(owner.split(":")[1]),
                            concurrency=1, counters={})
        uow.session.execute(update(Chunk).where(Chunk.id == chunk_id).values(updated_at=touched))
        uow.commit()
    return planned.batch_id, chunk_id


def test_a_lease_its_heartbeat_stopped_touching_is_handed_on_though_its_worker_lives(wired):
    # E.g. a task that gave its chunk up during a database outage, whose retry message then went down with
    # another worker: the lease names a live worker, but nothing runs the chunk. Without this it waited out
    # the whole lease (5 minutes by default).
    silent_for = 3 * wired.settings.heartbeat_interval_s + 5
    batch_id, chunk_id = _silent_lease(wired, utcnow() - timedelta(seconds=silent_for))
    assert sweeper.sweep(wired, send=False).requeued == [chunk_id]
    assert state(wired, batch_id, chunk_id) == ("running", "queued", False)


def test_a_lease_touched_within_three_heartbeats_is_left_alone(wired):
    batch_id, chunk_id = _silent_lease(wired, utcnow() - timedelta(seconds=wired.settings.heartbeat_interval_s))
    assert sweeper.sweep(wired, send=False).requeued == []
    assert state(wired, batch_id, chunk_id) == ("running", "leased", False)


def test_silence_does_not_count_across_a_database_restart(pg_url):
    # Heartbeats cannot be written while PostgreSQL is down: right after it started again every lease looks
    # silent. Here the "restart" is the server's start time, later than the silence window's start (a
    # heartbeat interval of a year), so even a lease untouched since 2000 is left to its heartbeat.
    from reasongen.bootstrap import bootstrap
    from reasongen.settings import Settings

    wired = bootstrap(Settings(database_url=pg_url, broker_url=None, heartbeat_interval_s=365 * 86400 / 3))
    try:
        batch_id, chunk_id = _silent_lease(wired, datetime(2000, 1, 1, tzinfo=timezone.utc))
        assert sweeper.sweep(wired, send=False).requeued == []
        assert state(wired, batch_id, chunk_id) == ("running", "leased", False)
    finally:
        wired.close()


def test_lost_chunks_are_re_sent_in_one_statement_not_one_each(wired):
    # After Redis restarted empty every queued chunk of every batch is lost at once (bench/chaos: ~130): one
    # conditional UPDATE per chunk, each its own transaction, took seconds on a loaded machine, and the workers
    # ran dry meanwhile. All of them now go in one statement, and each is still re-sent once.
    from sqlalchemy import event

    with wired.uow() as uow:
        add_records(uow, "ds", [{"instruction": f"Q{i}"} for i in range(12)])
    planned = plan_batch(wired, BatchRequest(dataset="ds", chunk_size=2))
    with wired.uow() as uow:
        uow.session.execute(update(Chunk).values(enqueued_at=utcnow() - timedelta(hours=1)))
        uow.commit()
    updates: list[str] = []

    def count(conn, cursor, statement, *_):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("UPDATE CHUNKS"):
            updates.append(statement)

    event.listen(wired.engine, "before_cursor_execute", count)
    try:
        report = sweeper.sweep(wired)
    finally:
        event.remove(wired.engine, "before_cursor_execute", count)
    assert sorted(report.resent) == sorted(planned.chunk_ids) and len(planned.chunk_ids) == 6
    assert len(updates) == 1
    assert sweeper.sweep(wired).resent == []  # just re-sent: not again

"""A chunk cancelled on its last attempt can be claimed after `resume`; a queued chunk that no claim can take
fails with its reason instead of being re-sent for ever (issue 10, item 2)."""

from __future__ import annotations

from sqlalchemy import update
from typer.testing import CliRunner

from cli.main import app
from storage.models import Chunk
from tests.helpers import add_records
from workers import batches, monitor, sweeper
from workers.chunks import claim, close, new_owner
from workers.planning import BatchRequest, plan_batch

runner = CliRunner()


def _plan(wired) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    with wired.uow() as uow:
        add_records(uow, "ds", [{"instruction": f"Q{i}"} for i in range(4)])
    planned = plan_batch(wired, BatchRequest(dataset="ds", chunk_size=4))
    return planned.batch_id, planned.chunk_ids[0]


def test_resume_makes_a_chunk_cancelled_on_its_last_attempt_claimable(wired, db_url, monkeypatch):
    monkeypatch.delenv("REASONGEN_BROKER_URL", raising=False)
    batch_id, chunk_id = _plan(wired)
    most = wired.settings.max_attempts
    with wired.uow() as uow:  # two earlier attempts ended by lease expiry
        uow.session.execute(update(Chunk).where(Chunk.id == chunk_id).values(attempts=most - 1))
        uow.commit()
    lease = claim(wired, chunk_id, new_owner())  # the last attempt...
    assert lease is not None and lease.attempts == most
    batches.stop_batch(wired, batch_id, "stopped", "budget reached: test")  # ...is stopped by the budget
    assert close(wired, lease, None, "cancelled").state == "cancelled"

    result = runner.invoke(app, ["--database-url", db_url, "resume", str(batch_id), "--max-tokens", "1000000"])
    assert result.exit_code == 0, result.output
    summary = monitor.batch_summary(wired, batch_id)
    assert (summary["status"], summary["done"], summary["chunks"]) == ("done", 4, {"done": 1})


def test_a_queued_chunk_out_of_attempts_fails_with_its_reason(wired):
    batch_id, chunk_id = _plan(wired)
    most = wired.settings.max_attempts
    with wired.uow() as uow:  # e.g. REASONGEN_MAX_ATTEMPTS lowered while it waited
        uow.session.execute(update(Chunk).where(Chunk.id == chunk_id).values(attempts=most))
        uow.commit()
    report = sweeper.sweep(wired, force=True, send=False)
    assert report.failed == [chunk_id] and report.resent == []
    assert sweeper.sweep(wired, force=True, send=False).resent == []  # never re-sent
    summary = monitor.batch_summary(wired, batch_id)
    assert summary["status"] == "failed" and summary["finished"]
    assert "no attempts left" in summary["errors"][0]["error"]

"""The in-process path (no broker): the same chunk code, run by `reasongen generate` with a progress bar."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from cli.main import app
from storage.models import Batch, Chunk, Draft
from tests.helpers import add_records
from workers import batches, dispatch
from workers.inprocess import run_here
from workers.planning import BatchRequest, plan_batch

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    monkeypatch.delenv("REASONGEN_BROKER_URL", raising=False)


def rows(n: int) -> list[dict]:
    return [{"instruction": f"Question {i}?", "lang": "ja" if i % 3 == 0 else "en", "key": f"k{i}"} for i in range(n)]


def cli(db_url: str, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["--database-url", db_url, *args])


def count(wired, stmt) -> int:  # type: ignore[no-untyped-def]
    with wired.uow() as uow:
        return uow.session.scalar(stmt) or 0


def test_generate_runs_chunks_here_and_a_rerun_skips_drafted_records(wired, db_url):
    with wired.uow() as uow:
        add_records(uow, "ds", rows(30))
    first = cli(db_url, "generate", "--dataset", "ds", "--backend", "fake", "--chunk-size", "7")
    assert first.exit_code == 0, first.output
    assert "batch 1 done: 30 done, 0 failed, 0 pending of 30" in first.output
    again = cli(db_url, "generate", "--dataset", "ds", "--backend", "fake", "--chunk-size", "7", "--json")
    assert again.exit_code == 0, again.output
    assert '"done": 30' in again.output and '"tokens": 0' in again.output  # all skipped by cache key
    assert count(wired, select(func.count()).select_from(Draft)) == 30
    assert count(wired, select(func.count()).select_from(Chunk).where(Chunk.status == "done")) == 10


def test_generate_errors_are_one_clear_line(wired, db_url):
    result = cli(db_url, "generate", "--dataset", "nope", "--backend", "fake")
    assert result.exit_code == 4 and "No dataset named 'nope'" in result.output  # not found
    with wired.uow() as uow:
        add_records(uow, "ds", rows(2))
    result = cli(db_url, "generate", "--dataset", "ds", "--backend", "fake", "--then", "deploy")
    assert result.exit_code == 2 and "--then must be one of: build, train" in result.output
    result = cli(db_url, "generate", "--dataset", "ds", "--backend", "fake", "--where", "lang")
    assert result.exit_code == 2 and "expected name=value" in result.output


def test_max_tokens_stops_the_batch_cleanly_and_says_so(wired, db_url):
    with wired.uow() as uow:
        add_records(uow, "ds", rows(40))
    result = cli(db_url, "generate", "--dataset", "ds", "--backend", "fake", "--chunk-size", "5",
                 "--sub-batch-size", "1", "--max-tokens", "2000")
    # Not every record has a draft: exit 1 (some failed), the last line says how to go on.
    assert result.exit_code == 1, result.output
    assert "reasongen resume 1" in result.output.strip().splitlines()[-1]
    with wired.uow() as uow:
        batch = uow.session.get(Batch, 1)
        assert (batch.status, batch.finished_at is not None) == ("stopped", True)
        assert batch.status_reason.startswith("budget reached")
        states = uow.chunks.count(1)
    drafted = count(wired, select(func.count()).select_from(Draft))
    assert 0 < drafted < 40 and set(states) <= {"done", "cancelled"} and states["cancelled"] > 0
    with wired.uow() as uow:  # a hard budget: each sub-batch reserved its estimate before it was sent
        assert uow.batch_stats.spend(1)[0] <= 2000
    refused = cli(db_url, "resume", "1")
    assert refused.exit_code == 2 and "pass a higher --max-cost" in refused.output
    resumed = cli(db_url, "resume", "1", "--max-tokens", "1000000", "--json")
    assert resumed.exit_code == 0, resumed.output
    assert '"status": "done"' in resumed.output
    assert count(wired, select(func.count()).select_from(Draft)) == 40


def test_cancel_mid_chunk_writes_nothing_after_the_sub_batch_boundary(wired):
    with wired.uow() as uow:
        add_records(uow, "ds", rows(20))
    planned = plan_batch(wired, BatchRequest(dataset="ds", chunk_size=10, sub_batch_size=2))
    seen = []

    def cancel_after_first(totals) -> None:  # type: ignore[no-untyped-def]
        seen.append(totals.done)
        if len(seen) == 1:
            batches.cancel(wired, planned.batch_id)

    run_here(wired, planned.batch_id, on_progress=cancel_after_first)
    assert count(wired, select(func.count()).select_from(Draft)) == 2
    with wired.uow() as uow:
        assert uow.chunks.count(planned.batch_id) == {"cancelled": 2}
        assert uow.session.get(Batch, planned.batch_id).status == "cancelled"


def test_retry_failed_reruns_only_failed_records(wired, db_url):
    with wired.uow() as uow:
        ids = add_records(uow, "ds", rows(12))
    planned = plan_batch(wired, BatchRequest(dataset="ds", chunk_size=5, backend_options={"fail_keys": ["k1", "k7"]}))
    run_here(wired, planned.batch_id)
    with wired.uow() as uow:  # the outage is over
        uow.session.execute(update(Batch).values(params={"backend_options": {}}))
        uow.commit()
    result = cli(db_url, "retry-failed", str(planned.batch_id), "--json")
    assert result.exit_code == 0, result.output
    assert '"total": 2' in result.output and '"failed": 0' in result.output
    with wired.uow() as uow:
        current = uow.batch_stats.current_drafts(ids, "reason", "fake-teacher")
        assert sorted(d.status for d in current.values()) == ["pending"] * 12
    assert count(wired, select(func.count()).select_from(Draft)) == 12  # the retries replaced the failed drafts
    nothing = cli(db_url, "retry-failed", "2")
    assert "no failed records" in nothing.output


def test_poison_chunk_fails_after_max_attempts(wired):
    import tests.queue.slow_backend  # noqa: F401

    with wired.uow() as uow:
        add_records(uow, "ds", rows(6))
    planned = plan_batch(wired, BatchRequest(dataset="ds", backend="slow", chunk_size=3,
                                             backend_options={"raise_keys": ["k4"]}))
    outcomes = run_here(wired, planned.batch_id)
    assert [o.state for o in outcomes] == ["done", "failed"]
    with wired.uow() as uow:
        failed = uow.chunks.for_batch(planned.batch_id, ["failed"])[0]
        assert (failed.attempts, failed.last_error) == (3, "RuntimeError: poison record")
        assert uow.session.get(Batch, planned.batch_id).status == "failed"


def test_followup_runs_once_in_process(wired, db_url, monkeypatch):
    calls = []
    monkeypatch.setattr(dispatch, "run_followup_here", lambda w, batch_id, then: calls.append((batch_id, then)))
    with wired.uow() as uow:
        add_records(uow, "ds", rows(9))
    result = cli(db_url, "generate", "--dataset", "ds", "--backend", "fake", "--chunk-size", "2", "--then", "build")
    assert result.exit_code == 0, result.output
    assert calls == [] and "waiting for review: 9" in " ".join(result.output.split())  # people are the gate without a policy
    approved = cli(db_url, "review", "approve", "--where", "dataset=ds", "--reviewer", "tester")
    assert approved.exit_code == 0, approved.output
    assert calls == [(1, "build")]  # fired by the review that left nothing pending
    again = cli(db_url, "release", "1")
    assert "already handed out" in again.output and calls == [(1, "build")]  # handed out once

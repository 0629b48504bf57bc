"""Batch mode against the loopback server's batch API, on a real PostgreSQL, polled in-process."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import func, select

from generation.provider_batch.prices import cost
from storage.models import Draft, ProviderJob, ProviderRequest
from tests.batchmode.conftest import ROWS, plan, until_jobs_closed
from workers import monitor, provider_jobs
from workers.provider_status import job_lines


def drive(wired, batch_id: int, timeout: float = 30, client: Any = None) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        provider_jobs.poll(wired, client, batch_id=batch_id)
        with wired.uow() as uow:
            if uow.batches.get(batch_id).finished_at is not None:
                return
        time.sleep(0.05)
    raise AssertionError(f"batch {batch_id} did not finish")


def drafts_of(wired, batch_id: int) -> list[Draft]:  # type: ignore[no-untyped-def]
    with wired.uow() as uow:
        found = list(uow.session.scalars(select(Draft).where(Draft.batch_id == batch_id, Draft.is_current)))
        uow.session.expunge_all()  # readable after the block
        return found


def one_draft_per_record(wired, batch_id: int) -> list[Draft]:  # type: ignore[no-untyped-def]
    drafts = drafts_of(wired, batch_id)
    with wired.uow() as uow:
        total = uow.batches.get(batch_id).total_records
    assert sorted(d.record_id for d in drafts) == sorted(set(d.record_id for d in drafts))
    assert len(drafts) == total
    return drafts


def test_batch_mode_drafts_every_record_at_half_the_online_price_and_sends_nothing_twice(server, batch_wired):
    url, handle = server(batch_seconds=0.3, reject_json_schema=True)
    wired = batch_wired(url, batch_max_requests=15)
    rows = [*ROWS, {"instruction": "Add 1 and 1. [[stub:error:once]]", "output": "2", "key": "e"},
            {"instruction": "Add 2 and 2. [[stub:malformed:once]]", "output": "4", "key": "m"}]
    batch_id = plan(wired, rows, twins=1)  # identical content: one request, a copy of its draft
    with wired.uow() as uow:  # stored before anything was sent
        assert uow.provider_jobs.for_batch(batch_id) == []
    provider_jobs.start(wired, batch_id)
    drive(wired, batch_id)
    drafts = one_draft_per_record(wired, batch_id)
    assert all(d.status == "pending" and d.response for d in drafts)
    with wired.uow() as uow:
        assert uow.batches.get(batch_id).status == "done"
        first = [j for j in uow.provider_jobs.for_batch(batch_id) if j.attempt == 1]
        # 42 distinct requests in files of at most 15 lines
        assert [j.requests for j in first] == [15, 15, 12]
    stats = handle.stats()
    # json_schema refused (400s, unpaid) -> stepped down to json_object: 41 answered (the 500 is unpaid), then
    # the retried error and the malformed reply's repair; no prompt was ever paid for twice.
    assert stats.get("batch_lines_repeated", 0) == 0
    assert (stats["status_400"], stats["batch_lines_paid"]) == (42, 41 + 2)
    with wired.uow() as uow:
        repaired = uow.session.scalars(select(ProviderRequest).where(ProviderRequest.kind == "repair")).all()
        assert len(repaired) == 1 and repaired[0].state == "done"
        assert "not valid JSON" in repaired[0].body["messages"][-1]["content"]
        assert repaired[0].body["response_format"] == {"type": "json_object"}
    paid = [d for d in drafts if d.cost_usd]
    assert len(paid) == len(drafts) - 1  # the twin's copy cost nothing
    for d in paid:  # batch price: half of what the same tokens cost online
        online = cost(wired.settings, "gpt-4o-mini", d.prompt_tokens, d.completion_tokens, batch=False)
        assert d.cost_usd == pytest.approx(online * 0.5) and d.cost_usd > 0


def test_an_expired_job_keeps_its_half_and_only_the_rest_is_sent_again(server, batch_wired):
    url, handle = server(batch_seconds=0.3, batch_expire_after=0.5)
    wired = batch_wired(url)
    batch_id = plan(wired)
    provider_jobs.start(wired, batch_id)
    with wired.uow() as uow:
        job = uow.provider_jobs.for_batch(batch_id)[0]
        uow.session.expunge_all()
    wait_for_job(wired, job.id, "done")
    handle.configure(batch_expire_after=None, batch_seconds=0.3)
    drive(wired, batch_id)
    one_draft_per_record(wired, batch_id)
    with wired.uow() as uow:
        jobs = uow.provider_jobs.for_batch(batch_id)
        assert [(j.status, j.requests, j.completed) for j in jobs] == [("expired", 40, 20), ("completed", 20, 20)]
        requests = uow.provider_jobs.request_counts(batch_id)
    assert requests == {"done": 40, "resent": 20}
    assert handle.stats()["batch_lines_paid"] == 20  # counters were reset by configure: the second job only


def wait_for_job(wired, job_id: int, state: str, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        provider_jobs.poll(wired)
        with wired.uow() as uow:
            if uow.provider_jobs.get(job_id).state == state:
                return
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {state}")


def test_errored_requests_are_retried_up_to_the_attempt_limit_then_fail_with_the_reason(server, batch_wired):
    url, _ = server(batch_seconds=0.1)
    wired = batch_wired(url, max_attempts=2)
    rows = [*ROWS[:5], {"instruction": "Always fails [[stub:error]]", "output": "x", "key": "bad"}]
    batch_id = plan(wired, rows)
    provider_jobs.start(wired, batch_id)
    drive(wired, batch_id)
    drafts = one_draft_per_record(wired, batch_id)
    bad = [d for d in drafts if d.status == "failed"]
    assert len(bad) == 1 and "gave up after 2 attempts" in bad[0].error and "500" in bad[0].error
    with wired.uow() as uow:
        assert uow.provider_jobs.request_counts(batch_id) == {"done": 5, "resent": 1, "failed": 1}


def test_a_job_failing_validation_fails_its_records_visibly(server, batch_wired):
    url, _ = server(batch_fail_validation=True)
    wired = batch_wired(url)
    batch_id = plan(wired, ROWS[:4])
    provider_jobs.start(wired, batch_id)
    drive(wired, batch_id)
    drafts = one_draft_per_record(wired, batch_id)
    assert {d.status for d in drafts} == {"failed"}
    assert all("provider job failed: line 1: simulated validation failure" in d.error for d in drafts)
    summary = monitor.batch_summary(wired, batch_id)
    assert summary["provider_jobs"]["jobs"][0]["status"] == "failed"
    assert any("simulated validation failure" in line for line in job_lines(summary))


def test_cancel_midway_keeps_the_answers_and_sends_nothing_more(server, batch_wired):
    from workers.batches import cancel

    url, handle = server(batch_seconds=1.5)
    wired = batch_wired(url)
    batch_id = plan(wired)
    provider_jobs.start(wired, batch_id)
    time.sleep(0.6)
    cancel(wired, batch_id)
    assert provider_jobs.cancel(wired, batch_id) == 1
    until_jobs_closed(wired, batch_id)
    with wired.uow() as uow:
        (job,) = uow.provider_jobs.for_batch(batch_id)
        counts = uow.provider_jobs.request_counts(batch_id)
        assert uow.batches.get(batch_id).status == "cancelled"
        uow.session.expunge_all()
    assert (job.status, job.cancel_requested) == ("cancelled", True)
    assert 0 < counts["done"] < 40 and counts["done"] + counts["cancelled"] == 40
    assert len(drafts_of(wired, batch_id)) == counts["done"]
    assert handle.stats()["batch_jobs_created"] == 1


def test_the_server_restarting_between_polls_loses_nothing(server, batch_wired, tmp_path):
    url, handle = server(batch_seconds=0.5, state_dir=str(tmp_path))
    wired = batch_wired(url)
    batch_id = plan(wired)
    provider_jobs.start(wired, batch_id)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    handle.stop()
    due_now(wired)
    provider_jobs.poll(wired, batch_id=batch_id)  # the server is down: noted, retried later
    with wired.uow() as uow:
        assert "Connection" in (uow.provider_jobs.for_batch(batch_id)[0].error or "")
    server(batch_seconds=0.5, state_dir=str(tmp_path), port=port)
    due_now(wired)
    drive(wired, batch_id)
    one_draft_per_record(wired, batch_id)


def due_now(wired) -> None:  # type: ignore[no-untyped-def]
    """Do not wait out the back-off."""
    with wired.uow() as uow:
        uow.session.execute(ProviderJob.__table__.update().values(next_poll_at=None))
        uow.commit()


class CrashAfter:
    """The SDK client, but the named call raises after the provider has done it (the answer is lost)."""

    def __init__(self, url: str, what: str):
        import openai

        from tests.batchmode.conftest import KEY

        self.real = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0)
        self.what, self.crashed = what, False
        outer = self

        class Part:
            def __init__(self, inner: Any):
                self.inner = inner

            def __getattr__(self, name: str) -> Any:
                fn = getattr(self.inner, name)
                if name != "create" or outer.crashed or outer.what not in type(self.inner).__name__.lower():
                    return fn

                def create(*a: Any, **k: Any) -> Any:
                    fn(*a, **k)
                    outer.crashed = True
                    raise ConnectionError("lost the answer")
                return create

        self.files, self.batches = Part(self.real.files), Part(self.real.batches)


@pytest.mark.parametrize("what", ["files", "batches"])
def test_a_crash_after_the_provider_acted_but_before_our_commit_sends_nothing_twice(server, batch_wired, what):
    url, handle = server(batch_seconds=0.2)
    wired = batch_wired(url)
    batch_id = plan(wired, ROWS[:10])
    provider_jobs.start(wired, batch_id, client=CrashAfter(url, what))
    drive(wired, batch_id)
    one_draft_per_record(wired, batch_id)
    stats = handle.stats()
    assert (stats["batch_files_uploaded"], stats["batch_jobs_created"]) == (1, 1)
    assert stats["batch_lines_paid"] == 10 and stats.get("batch_lines_repeated", 0) == 0


def test_an_output_file_read_twice_writes_nothing_twice(server, batch_wired):
    from workers.provider_ingest import ingest_file

    url, _ = server(batch_seconds=0.1)
    wired = batch_wired(url)
    batch_id = plan(wired, ROWS[:6])
    provider_jobs.start(wired, batch_id)
    drive(wired, batch_id)
    client = provider_jobs.client_for(wired.settings)
    with wired.uow() as uow:
        job = uow.provider_jobs.for_batch(batch_id)[0]
        assert ingest_file(wired.settings, uow, client, job, job.output_file_id) == 0
        uow.commit()
        n = uow.session.scalar(select(func.count()).select_from(Draft).where(Draft.batch_id == batch_id))
        sent = uow.session.scalar(select(func.count()).select_from(ProviderRequest).where(
            ProviderRequest.batch_id == batch_id))
    assert (n, sent) == (6, 6)


def test_big_files_are_ingested_in_slices_with_the_same_result(server, batch_wired, monkeypatch):
    from workers import provider_ingest

    monkeypatch.setattr(provider_ingest, "SLICE", 7)  # 40 lines: six slices, the last one short
    url, handle = server(batch_seconds=0.1)
    wired = batch_wired(url)
    rows = [*ROWS[:39], {"instruction": "x [[stub:error:once]]", "output": "y", "key": "e"}]
    batch_id = plan(wired, rows)
    provider_jobs.start(wired, batch_id)
    drive(wired, batch_id)
    assert {d.status for d in one_draft_per_record(wired, batch_id)} == {"pending"}
    with wired.uow() as uow:
        assert uow.provider_jobs.request_counts(batch_id) == {"done": 40, "resent": 1}
    assert handle.stats()["batch_lines_paid"] == 40

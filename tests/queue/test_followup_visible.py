"""A `--then` follow-up that cannot run says so (issue 10, item 10): in-process `--then build` waits for
this batch's drafts to be decided and never builds silently from older approvals, `status` shows the follow-up's state and error, and `reasongen
retry-followup BATCH` runs it again. Exit codes of generate (item 8) are checked on the way."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from cli.main import app
from storage.models import Build, Draft
from tests.helpers import add_records
from workers import monitor

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch, tmp_path):
    monkeypatch.delenv("REASONGEN_BROKER_URL", raising=False)
    monkeypatch.chdir(tmp_path)  # builds are written under the working directory


def cli(db_url: str, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["--database-url", db_url, *args])


def builds(wired) -> int:  # type: ignore[no-untyped-def]
    with wired.uow() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(Build)) or 0)


def test_then_build_refuses_to_build_from_older_approvals_and_retry_followup_runs_it(wired, db_url):
    with wired.uow() as uow:
        add_records(uow, "ds", [{"instruction": f"Q{i}?", "key": f"k{i}"} for i in range(4)])
    first = cli(db_url, "generate", "--dataset", "ds", "--backend", "fake", "--template", "reason-concise")
    assert first.exit_code == 0, first.output
    with wired.uow() as uow:  # older drafts (another template), approved
        uow.session.execute(update(Draft).values(status="approved"))
        uow.commit()

    result = cli(db_url, "generate", "--dataset", "ds", "--backend", "fake", "--then", "build")
    assert result.exit_code == 0, result.output  # the batch is fine; its follow-up waits for people
    assert "waiting for review: 4" in " ".join(result.output.split()) and builds(wired) == 0  # nothing built from older approvals
    batch_id = 2
    assert monitor.batch_summary(wired, batch_id)["waiting_for_review"] == 4

    released = cli(db_url, "release", str(batch_id))  # released with none of this batch's drafts approved
    assert released.exit_code != 0
    assert "nothing to build" in released.output and builds(wired) == 0
    summary = monitor.batch_summary(wired, batch_id)
    assert summary["followup"]["state"] == "failed" and "nothing to build" in summary["followup"]["error"]
    shown = cli(db_url, "status", str(batch_id))
    assert "follow-up 'build': failed" in shown.output and f"reasongen retry-followup {batch_id}" in shown.output

    with wired.uow() as uow:  # people approve this batch's drafts
        uow.session.execute(update(Draft).where(Draft.batch_id == batch_id).values(status="approved"))
        uow.commit()
    retried = cli(db_url, "retry-followup", str(batch_id))
    assert retried.exit_code == 0, retried.output
    assert builds(wired) == 1 and monitor.batch_summary(wired, batch_id)["followup"]["state"] == "done"
    again = cli(db_url, "retry-followup", str(batch_id))  # done: refused, nothing built twice
    assert again.exit_code != 0 and "is done" in again.output and builds(wired) == 1


def test_a_failed_batch_says_its_followup_was_skipped(wired, db_url):
    with wired.uow() as uow:
        add_records(uow, "ds", [{"instruction": "Q?", "key": "k0"}])
    from workers.planning import BatchRequest, plan_batch
    from workers.chunks import claim, new_owner, release_after_error

    planned = plan_batch(wired, BatchRequest(dataset="ds", then="build"))
    for _ in range(wired.settings.max_attempts):
        release_after_error(wired, claim(wired, planned.chunk_ids[0], new_owner()), RuntimeError("poison"))
    summary = monitor.batch_summary(wired, planned.batch_id)
    assert summary["status"] == "failed"
    assert summary["followup"] == {"then": "build", "state": "skipped", "error": "not run: the batch ended failed"}
    assert json.loads(cli(db_url, "status", str(planned.batch_id), "--json").stdout)["followup"]["state"] == "skipped"


def test_generate_exits_1_with_the_failed_count_and_commonest_error(wired, db_url, monkeypatch):
    from reasongen.testing.openai_server import start_stub_server

    base_url, stub = start_stub_server(refusal_rate=0.5, seed=3)
    monkeypatch.setenv("OPENAI_BASE_URL", base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    try:
        with wired.uow() as uow:
            add_records(uow, "ds", [{"instruction": f"Q{i}?", "key": f"k{i}"} for i in range(12)])
        result = cli(db_url, "generate", "--dataset", "ds", "--backend", "teacher")
        summary = monitor.batch_summary(wired, 1)
        assert 0 < summary["failed"] < 12
        assert result.exit_code == 1, result.output
        last = result.output.strip().splitlines()[-1]
        assert f"{summary['failed']} of 12 records failed" in last and "commonest error" in last
        stub.configure(refusal_rate=0.0)
        retried = cli(db_url, "retry-failed", "1")
        assert retried.exit_code == 0, retried.output
        rebuilt = cli(db_url, "rebuild", "--dataset", "ds", "--backend", "teacher")
        assert rebuilt.exit_code == 0 and "Nothing is stale" in rebuilt.output
    finally:
        stub.stop()

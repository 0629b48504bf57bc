"""A batch run with --mode batch stays in batch mode: `retry-failed` and `resume` (and `judge --mode batch`) from
the command line go to the loopback server's batch API, never to /chat/completions, and send nothing twice."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.batchmode.conftest import ROWS, until_jobs_closed
from tests.batchmode.test_cli import cli
from tests.batchmode.test_judge_batch import drafted, judgements
from tests.helpers import add_records

GEN = ["generate", "-d", "ds", "-b", "teacher", "-m", "gpt-4o-mini", "--mode", "batch"]
JUDGE = ["judge", "-d", "ds", "-b", "teacher", "-m", "gpt-4o-mini", "--mode", "batch"]


def summary_of(output: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(output[output.index("{"):])
    return found


def _add(wired: Any, rows: list[dict[str, Any]]) -> None:
    with wired.uow() as uow:
        add_records(uow, "ds", rows)


def test_retry_failed_of_a_batch_mode_batch_is_a_provider_job_of_the_failed_records_only(server, batch_wired):
    url, handle = server(batch_seconds=0.1)
    wired = batch_wired(url)
    _add(wired, [*ROWS[:6], {"instruction": "Add 9 and 9. [[stub:error:once]]", "output": "18", "key": "bad"}])
    first = cli(wired, *GEN, "--wait", "--json", REASONGEN_MAX_ATTEMPTS="1")  # the error is not retried: failed
    assert first.exit_code == 1, first.output
    batch = summary_of(first.output)
    assert (batch["done"], batch["failed"]) == (6, 1)
    retry = cli(wired, "retry-failed", str(batch["batch"]), "--wait", "--json")
    assert retry.exit_code == 0, retry.output
    again = summary_of(retry.output)
    assert (again["total"], again["done"], again["failed"]) == (1, 1, 0)
    stats = handle.stats()
    assert stats.get("status_200", 0) == 0  # not one online request
    assert stats["batch_jobs_created"] == 2 and stats["batch_lines_paid"] == 6 + 1
    assert stats.get("batch_lines_repeated", 0) == 0
    jobs = json.loads(cli(wired, "status", str(again["batch"]), "--json").output)["provider_jobs"]["jobs"]
    assert [(j["requests"], j["status"]) for j in jobs] == [(1, "completed")]


@pytest.mark.parametrize("stage", ["generate", "judge"])
def test_resume_after_cancel_sends_only_what_never_ran_as_a_new_provider_job(server, batch_wired, stage):
    url, handle = server(batch_seconds=1.5)
    wired = batch_wired(url)
    if stage == "generate":
        _add(wired, ROWS)
        assert cli(wired, *GEN).exit_code == 0
    else:
        drafted(wired, "ds", ROWS)
        assert cli(wired, *JUDGE).exit_code == 0
    batch_id = json.loads(cli(wired, "status", "--json").output)[0]["batch"]  # the newest: this one
    time.sleep(0.6)
    assert "1 provider batch job(s) cancelled" in cli(wired, "cancel", str(batch_id)).output
    until_jobs_closed(wired, batch_id)
    with wired.uow() as uow:
        counts = uow.provider_jobs.request_counts(batch_id)
    assert 0 < counts["done"] < 40 and counts["done"] + counts["cancelled"] == 40
    handle.configure(batch_seconds=0.2)
    resumed = cli(wired, "resume", str(batch_id), "--wait", "--json")
    assert resumed.exit_code == 0, resumed.output
    summary = summary_of(resumed.output)
    assert (summary["status"], summary["done"], summary["failed"]) == ("done", 40, 0)
    stats = handle.stats()  # counters reset by configure: the resumed job only
    assert stats.get("status_200", 0) == 0 and stats["batch_jobs_created"] == 1
    assert stats["batch_lines_paid"] == counts["cancelled"] and stats.get("batch_lines_repeated", 0) == 0
    with wired.uow() as uow:
        assert uow.provider_jobs.request_counts(batch_id) == {"done": 40, "resent": counts["cancelled"]}


def test_resume_leaves_a_job_still_running_at_the_provider_alone(server, batch_wired):
    url, handle = server(batch_seconds=30)
    wired = batch_wired(url)
    _add(wired, ROWS[:8])
    assert cli(wired, *GEN).exit_code == 0
    batch_id = json.loads(cli(wired, "status", "--json").output)[0]["batch"]
    result = cli(wired, "resume", str(batch_id))
    assert result.exit_code == 0 and "0 request(s) never answered" in result.output, result.output
    assert handle.stats()["batch_jobs_created"] == 1 and handle.stats().get("status_200", 0) == 0
    with wired.uow() as uow:
        assert [j.state for j in uow.provider_jobs.for_batch(batch_id)] == ["submitted"]
        assert uow.provider_jobs.request_counts(batch_id) == {"sent": 8}


def test_judge_mode_batch_from_the_command_line_then_retry_failed_stays_in_batch_mode(server, batch_wired):
    url, handle = server(batch_seconds=0.1)
    wired = batch_wired(url)
    drafted(wired, "ds", [*ROWS[:4], {"instruction": "Add 3 and 3. [[stub:error:once]]", "output": "6", "key": "e"}])
    first = cli(wired, *JUDGE, "--wait", "--json", REASONGEN_MAX_ATTEMPTS="1")
    assert first.exit_code == 0, first.output
    batch = summary_of(first.output)
    assert (batch["done"], batch["failed"]) == (4, 1) and batch["cost_usd"] > 0
    assert "judge request failed" in judgements(wired, "ds")["e"].error
    status = cli(wired, "status", str(batch["batch"]), COLUMNS="80").output
    assert "job " in status and "(try 1): completed, 4/5 done, 1 failed" in status, status
    retry = cli(wired, "retry-failed", str(batch["batch"]), "--wait", "--json")
    assert retry.exit_code == 0, retry.output
    again = summary_of(retry.output)
    assert (again["total"], again["done"], again["failed"]) == (1, 1, 0)
    assert all(j.error is None for j in judgements(wired, "ds").values())
    stats = handle.stats()
    assert stats.get("status_200", 0) == 0 and stats["batch_jobs_created"] == 2
    assert stats["batch_lines_paid"] == 5 and stats.get("batch_lines_repeated", 0) == 0


def test_cancel_reaches_a_judge_batchs_provider_job(server, batch_wired):
    url, handle = server(batch_seconds=30)
    wired = batch_wired(url)
    drafted(wired, "ds", ROWS[:5])
    started = cli(wired, *JUDGE)
    assert started.exit_code == 0 and "5 drafts in 1 provider batch job(s)" in started.output, started.output
    batch_id = json.loads(cli(wired, "status", "--json").output)[0]["batch"]
    assert "1 provider batch job(s) cancelled" in cli(wired, "cancel", str(batch_id)).output
    assert handle.stats()["batch_cancels"] == 1




def test_judge_auto_mode_picks_batch_for_enough_drafts_with_the_latency_accepted(server, batch_wired):
    url, handle = server(batch_seconds=0.1)
    wired = batch_wired(url)
    drafted(wired, "ds", ROWS[:3])
    auto = ["judge", "-d", "ds", "-b", "teacher", "-m", "gpt-4o-mini", "--mode", "auto"]
    small = cli(wired, *auto, "--accept-latency", REASONGEN_BATCH_AUTO_THRESHOLD="10")
    assert "mode: online (3 records, under the batch threshold of 10)" in small.output, small.output
    assert handle.stats()["status_200"] == 3 and handle.stats().get("batch_jobs_created", 0) == 0
    drafted(wired, "more", ROWS[3:6])
    big = cli(wired, *auto[:2], "more", *auto[3:], "--accept-latency", "--wait", REASONGEN_BATCH_AUTO_THRESHOLD="2")
    assert "mode: batch (3 records >= 2, latency accepted: half price)" in big.output, big.output
    assert handle.stats()["batch_jobs_created"] == 1 and handle.stats()["status_200"] == 3


def test_the_web_app_cancels_and_resumes_a_batch_mode_batch_like_the_cli(server, batch_wired):
    """The web app's cancel reaches the provider's jobs (they ran on, and cost, before), and its resume sends what
    the cancel kept from running as a new provider job, with no broker and nothing online."""
    from fastapi.testclient import TestClient

    from web import accounts
    from web.app import create_app

    url, handle = server(batch_seconds=30)
    wired = batch_wired(url)
    _add(wired, ROWS[:8])
    assert cli(wired, *GEN).exit_code == 0
    batch_id = json.loads(cli(wired, "status", "--json").output)[0]["batch"]
    with wired.uow() as uow:
        accounts.add_user(uow, "ada", "admin", None)
        token = accounts.new_token(uow, "ada")
        uow.commit()
    web = TestClient(create_app(wired.settings, wired), headers={"authorization": f"Bearer {token}"})
    cancelled = web.post(f"/api/batches/{batch_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert "1 provider batch job(s) cancelled" in cancelled.json()["message"]
    assert handle.stats()["batch_cancels"] == 1
    until_jobs_closed(wired, batch_id)
    with wired.uow() as uow:
        kept_from_running = uow.provider_jobs.request_counts(batch_id).get("cancelled", 0)
    assert kept_from_running > 0
    handle.configure(batch_seconds=0.1)
    resumed = web.post(f"/api/batches/{batch_id}/resume")
    assert resumed.status_code == 200, resumed.text
    assert resumed.json() == {"batch": batch_id, "resent_requests": kept_from_running}
    stats = handle.stats()
    assert stats.get("status_200", 0) == 0 and stats["batch_jobs_created"] == 1

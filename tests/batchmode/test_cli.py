"""`generate --mode batch|auto`, `status`, `cancel` and `rebuild --dry-run` from the command line."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from cli.main import app
from tests.batchmode.conftest import KEY, ROWS
from tests.helpers import add_records

runner = CliRunner()


def cli(wired, *args: str, **env: str):  # type: ignore[no-untyped-def]
    s = wired.settings
    base = {"REASONGEN_DATABASE_URL": s.database_url, "OPENAI_BASE_URL": s.openai_base_url, "OPENAI_API_KEY": KEY,
            "REASONGEN_BROKER_URL": "", "REASONGEN_REDIS_URL": "", "REASONGEN_BATCH_POLL_MIN": "0.05",
            "REASONGEN_BATCH_POLL_MAX": "0.2", "REASONGEN_PRICES": json.dumps({"gpt-4o-mini": [0.15, 0.6]}), **env}
    return runner.invoke(app, list(args), env=base)


def _add(wired: Any, n: int = 12) -> None:
    with wired.uow() as uow:
        add_records(uow, "ds", ROWS[:n])


def test_generate_in_batch_mode_waits_for_the_drafts_and_status_shows_the_job(server, batch_wired):
    url, handle = server(batch_seconds=0.3)
    wired = batch_wired(url)
    _add(wired)
    result = cli(wired, "generate", "-d", "ds", "-b", "teacher", "-m", "gpt-4o-mini", "--mode", "batch", "--wait",
                 "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{"):])
    assert (summary["status"], summary["done"], summary["failed"]) == ("done", 12, 0)
    assert handle.stats()["batch_jobs_created"] == 1 and handle.stats().get("status_200", 0) == 0  # no online call
    status = cli(wired, "status", str(summary["batch"]), "--json")
    jobs = json.loads(status.output)["provider_jobs"]
    assert jobs["requests"] == {"done": 12}
    (job,) = jobs["jobs"]
    assert (job["status"], job["completed"], job["requests"]) == ("completed", 12, 12) and job["age_s"] >= 0
    text = cli(wired, "status", str(summary["batch"]), COLUMNS="80").output
    assert f"job {job['job']} (try 1): completed, 12/12 done, 0 failed" in text


def test_cancel_cancels_the_provider_job_and_status_says_so(server, batch_wired):
    url, handle = server(batch_seconds=30)
    wired = batch_wired(url)
    _add(wired)
    started = cli(wired, "generate", "-d", "ds", "-b", "teacher", "-m", "gpt-4o-mini", "--mode", "batch")
    assert started.exit_code == 0, started.output
    assert "1 provider batch job(s)" in started.output
    batch_id = json.loads(cli(wired, "status", "--json").output)[0]["batch"]
    result = cli(wired, "cancel", str(batch_id))
    assert result.exit_code == 0 and "1 provider batch job(s) cancelled" in result.output
    assert handle.stats()["batch_cancels"] == 1
    jobs = json.loads(cli(wired, "status", str(batch_id), "--json").output)["provider_jobs"]["jobs"]
    assert jobs[0]["cancel_requested"] is True
    assert "cancel requested" in cli(wired, "status", str(batch_id)).output


def test_auto_mode_needs_the_size_and_the_accepted_latency(server, batch_wired):
    url, _ = server(batch_seconds=0.1)
    wired = batch_wired(url)
    _add(wired)
    common = ["generate", "-d", "ds", "-b", "teacher", "-m", "gpt-4o-mini", "--mode", "auto", "--limit", "4"]
    small = cli(wired, *common, REASONGEN_BATCH_AUTO_THRESHOLD="10")
    assert "mode: online (4 records, under the batch threshold of 10)" in small.output
    big = cli(wired, *common, REASONGEN_BATCH_AUTO_THRESHOLD="2")
    assert "mode: online" in big.output and "add --accept-latency" in big.output
    chosen = cli(wired, *common, "--accept-latency", "--wait", REASONGEN_BATCH_AUTO_THRESHOLD="2")
    assert "mode: batch (4 records >= 2, latency accepted: half price)" in chosen.output, chosen.output


def test_batch_mode_refuses_a_backend_without_a_batch_api_before_planning(server, batch_wired):
    url, _ = server()
    wired = batch_wired(url)
    _add(wired, 2)
    result = cli(wired, "generate", "-d", "ds", "-b", "fake", "--mode", "batch")
    assert result.exit_code != 0 and "--mode batch needs --backend teacher" in result.output
    assert json.loads(cli(wired, "status", "--json").output) == []


def test_rebuild_dry_run_shows_online_and_batch_cost_side_by_side(server, batch_wired):
    url, _ = server()
    wired = batch_wired(url)
    _add(wired, 5)
    result = cli(wired, "rebuild", "-d", "ds", "-b", "teacher", "-m", "gpt-4o-mini", "--dry-run", "--json")
    totals = json.loads(result.output)["estimate"]
    assert totals["online_usd"] > 0 and totals["batch_usd"] == totals["online_usd"] * 0.5
    text = cli(wired, "rebuild", "-d", "ds", "-b", "teacher", "-m", "gpt-4o-mini", "--dry-run").output
    assert "cost online ~$" in text and "batch mode ~$" in text


def test_batch_mode_with_a_judge_in_the_same_run_is_refused_and_auto_runs_it_online(server, batch_wired):
    url, _ = server(batch_seconds=0.1)
    wired = batch_wired(url)
    _add(wired, 3)
    common = ["generate", "-d", "ds", "-b", "teacher", "-m", "gpt-4o-mini", "--judge", "fake"]
    refused = cli(wired, *common, "--mode", "batch")
    assert refused.exit_code != 0 and "reasongen judge -d DATASET --mode batch" in refused.output, refused.output
    assert json.loads(cli(wired, "status", "--json").output) == []  # refused before planning
    auto = cli(wired, *common, "--mode", "auto", "--accept-latency", REASONGEN_BATCH_AUTO_THRESHOLD="1")
    assert "mode: online (--judge judges each draft in the same chunk, online)" in auto.output, auto.output


def test_a_budget_is_refused_in_batch_mode_and_auto_keeps_it_online(server, batch_wired):
    """A provider job runs whole once submitted, so --max-cost could not hold: refused up front, never ignored."""
    url, _ = server(batch_seconds=0.1)
    wired = batch_wired(url)
    _add(wired, 3)
    for command in (["generate"], ["rebuild"]):
        args = [*command, "-d", "ds", "-b", "teacher", "-m", "gpt-4o-mini", "--max-cost", "0.01"]
        refused = cli(wired, *args, "--mode", "batch")
        assert refused.exit_code != 0 and "--max-cost/--max-tokens hold online only" in refused.output, refused.output
    assert json.loads(cli(wired, "status", "--json").output) == []  # refused before planning
    auto = cli(wired, "generate", "-d", "ds", "-b", "teacher", "-m", "gpt-4o-mini", "--max-tokens", "100000",
               "--mode", "auto", "--accept-latency", "--wait", REASONGEN_BATCH_AUTO_THRESHOLD="1")
    assert "mode: online (--max-cost/--max-tokens hold online only)" in auto.output, auto.output
    judged = cli(wired, "judge", "-d", "ds", "-b", "teacher", "-m", "gpt-4o-mini", "--max-cost", "1", "--mode",
                 "batch")
    assert judged.exit_code != 0 and "hold online only" in judged.output

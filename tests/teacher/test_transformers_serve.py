"""Against a real OpenAI-compatible server the project did not write: `transformers serve` with tiny models.

The parrot answers a JSON draft wrapped in prose and ignores response_format (the server drops the field):
a dataset is generated end to end, parsed leniently, with no repair requests. The model without a chat
template gets HTTP 500 on every request: the breaker pauses the batch after N requests, and resume finishes
it once the model folder is repaired.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from cli.main import app
from reasongen.testing.tserve import PARROT_DRAFT
from storage.models import Batch, Draft
from tests.helpers import add_records

pytestmark = pytest.mark.slow
runner = CliRunner()
THRESHOLD = 5


def cli(db_url: str, base_url: str, model: Path, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["--database-url", db_url, "--openai-base-url", base_url, "--teacher-model", str(model),
                               *args])


def rows(n: int) -> list[dict]:
    return [{"instruction": f"What is {i} plus {i}?", "output": f"It is {2 * i}.", "key": f"k{i}"} for i in range(n)]


def flat(output: str) -> str:
    """Rich wraps at 80 columns: compare with whitespace collapsed."""
    return " ".join(output.split())


def chat_requests(log: str) -> int:
    return len(re.findall(r'"POST /v1/chat/completions HTTP/1.1" \d+', log))


def test_a_dataset_is_generated_end_to_end_and_parsed_leniently(wired, db_url, tserve_url, tiny_models):
    with wired.uow() as uow:
        add_records(uow, "ds", rows(12))
    result = cli(db_url, tserve_url, tiny_models["parrot"], "generate", "--dataset", "ds", "--chunk-size", "5")
    assert result.exit_code == 0, result.output
    assert "12 done, 0 failed" in flat(result.output)
    assert "teacher mode text (the server ignored response_format json_schema" in flat(result.output)
    with wired.uow() as uow:
        drafts = uow.session.execute(select(Draft)).scalars().all()
        batch = uow.session.execute(select(Batch)).scalar_one()
        assert len(drafts) == 12 and all(d.response == PARROT_DRAFT["response"] for d in drafts)
        assert all(d.raw_text.startswith("Sure, here it is:") for d in drafts)  # prose around the JSON
        assert batch.response_mode.startswith("text (the server ignored response_format")
        assert batch.concurrency_limit is not None and 1 <= batch.concurrency_limit <= 64


def test_check_reports_what_the_server_can_do(tserve_url, tiny_models):
    result = runner.invoke(app, ["--openai-base-url", tserve_url, "teacher", "check", "--model",
                                 str(tiny_models["parrot"]), "--in-flight", "4", "--json"])
    assert result.exit_code == 0, result.output
    import json

    report = json.loads(result.output)
    assert report["reachable"] and report["key_accepted"] and report["ok"]
    assert report["response_format"].startswith("ignored") and report["reply_parses"]
    assert report["context_length"] == 2048 and "local config" in report["context"]
    assert report["latency_1_s"] > 0 and report["latency_n_s"] > 0 and report["suggested_concurrency"] >= 2


def test_check_names_the_server_error_and_fails(tserve_url, tiny_models):
    result = runner.invoke(app, ["--openai-base-url", tserve_url, "teacher", "check", "--model",
                                 str(tiny_models["plain"])])
    assert result.exit_code == 6
    assert "HTTP 500 from the server: Internal Server Error" in flat(result.output)


def test_a_permanent_500_opens_the_breaker_and_resume_finishes(wired, db_url, tserve_server, tiny_models, tmp_path,
                                                                monkeypatch):
    tserve_url = tserve_server.base_url
    broken = tmp_path / "broken"
    shutil.copytree(tiny_models["plain"], broken)  # no chat template: HTTP 500 on every chat request
    monkeypatch.setenv("REASONGEN_TEACHER_BREAKER", str(THRESHOLD))
    monkeypatch.setenv("REASONGEN_TEACHER_MAX_RETRIES", "6")
    with wired.uow() as uow:
        add_records(uow, "ds", rows(24))
    before = chat_requests(tserve_server.log_text())
    result = cli(db_url, tserve_url, broken, "generate", "--dataset", "ds", "--chunk-size", "6")
    sent = chat_requests(tserve_server.log_text()) - before
    assert result.exit_code == 6, result.output
    assert "paused" in result.output and "HTTP 500 from the server: Internal Server Error" in flat(result.output)
    assert sent < 7 * 24 / 4, f"{sent} requests for 24 records"  # not 7 x records: about the threshold
    with wired.uow() as uow:
        batch = uow.session.execute(select(Batch)).scalar_one()
        assert batch.status == "paused" and "circuit breaker open" in batch.status_reason
        batch_id = batch.id
    status = runner.invoke(app, ["--database-url", db_url, "status", str(batch_id)])
    assert "paused" in status.output and "Internal Server Error" in flat(status.output), status.output

    shutil.rmtree(broken)  # the fix: the same model folder, now with a chat template
    shutil.copytree(tiny_models["parrot"], broken)
    time.sleep(3)  # the server unloads the broken model after 2 s idle, so it reads the folder again
    resumed = cli(db_url, tserve_url, broken, "resume", str(batch_id))
    assert resumed.exit_code == 0, resumed.output
    assert "done: 24 done, 0 failed" in flat(resumed.output)

"""The loopback server's batch API behaves like the real one where batch mode depends on it."""

from __future__ import annotations

import time

import openai
import orjson
import pytest

from tests.batchmode.conftest import KEY


def _lines(n: int, **override: object) -> bytes:
    rows = [{"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": "m", "messages": [{"role": "user", "content": f"Reference answer:\nThe sum is {i}."}]}}
            for i in range(n)]
    for key, value in override.items():
        index, field = key.split("_", 1)
        rows[int(index[1:])][field] = value
    return b"\n".join(orjson.dumps(r) for r in rows)


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key=KEY, max_retries=0)


def _submit(client: openai.OpenAI, data: bytes):  # type: ignore[no-untyped-def]
    f = client.files.create(file=("in.jsonl", data), purpose="batch")
    return client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")


def _wait(client: openai.OpenAI, job_id: str, timeout: float = 10):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.batches.retrieve(job_id)
        if job.status in ("completed", "expired", "cancelled", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError("job never ended")


@pytest.mark.parametrize("override, message", [
    ({"l1_custom_id": "c0"}, "duplicate custom_id"),
    ({"l2_method": "GET"}, "method must be POST"),
    ({"l0_url": "/v1/completions"}, "url must be /v1/chat/completions"),
    ({"l3_body": {"messages": []}}, "body must hold a model"),
])
def test_an_invalid_input_file_fails_the_job_naming_the_line(server, override, message):
    url, _ = server()
    job = _submit(_client(url), _lines(4, **override))
    assert job.status == "failed"
    assert [(e.message, e.line) for e in job.errors.data] == [(message, int(next(iter(override))[1]) + 1)]


def test_a_job_runs_over_time_and_returns_output_and_error_files(server):
    url, handle = server(batch_seconds=0.4)
    client = _client(url)
    data = _lines(6) + b"\n" + orjson.dumps({"custom_id": "bad", "method": "POST", "url": "/v1/chat/completions",
                                               "body": {"model": "m", "messages": [
                                                   {"role": "user", "content": "x [[stub:error]]"}]}})
    job = _submit(client, data)
    assert client.batches.retrieve(job.id).status == "in_progress"
    job = _wait(client, job.id)
    assert (job.status, job.request_counts.completed, job.request_counts.failed) == ("completed", 6, 1)
    out = [orjson.loads(x) for x in client.files.content(job.output_file_id).content.splitlines()]
    assert sorted(o["custom_id"] for o in out) == [f"c{i}" for i in range(6)]
    assert all(o["response"]["status_code"] == 200 for o in out)
    err = [orjson.loads(x) for x in client.files.content(job.error_file_id).content.splitlines()]
    assert [(e["custom_id"], e["response"]["status_code"]) for e in err] == [("bad", 500)]
    assert handle.stats()["batch_lines_paid"] == 6


def test_an_expiring_job_keeps_the_results_it_has_and_reports_the_rest_expired(server):
    url, _ = server(batch_seconds=0.3, batch_expire_after=0.5)
    client = _client(url)
    job = _wait(client, _submit(client, _lines(10)).id)
    assert (job.status, job.request_counts.completed, job.request_counts.failed) == ("expired", 5, 5)
    err = [orjson.loads(x) for x in client.files.content(job.error_file_id).content.splitlines()]
    assert {e["error"]["code"] for e in err} == {"batch_expired"} and all(e["response"] is None for e in err)


def test_a_cancel_midway_keeps_what_ran(server):
    url, _ = server(batch_seconds=1.0)
    client = _client(url)
    job = _submit(client, _lines(10))
    time.sleep(0.45)
    assert client.batches.cancel(job.id).status == "cancelling"
    job = _wait(client, job.id)
    assert job.status == "cancelled" and 3 <= job.request_counts.completed <= 7
    assert job.request_counts.completed + job.request_counts.failed == 10


def test_files_and_jobs_survive_a_restart_with_a_state_dir(server, tmp_path):
    url, handle = server(batch_seconds=0.5, state_dir=str(tmp_path))
    job = _submit(_client(url), _lines(3))
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    handle.stop()
    url2, _ = server(batch_seconds=0.5, state_dir=str(tmp_path), port=port)
    job = _wait(_client(url2), job.id)
    assert (job.status, job.request_counts.completed) == ("completed", 3)

"""The teacher against the project's loopback server behaving like self-hosted servers do: it ignores
response_format, computes one request at a time, has a small context, or fails every request the same way."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from generation.backends.teacher import _MODES, TeacherBackend
from generation.records import TrainingView
from generation.retry import Backoff
from generation.templates import load_template
from reasongen.testing.openai_server import StubHandle, start_stub_server

KEY = "sk-selfhosted-0123456789abcdef"
FAST = Backoff(base_s=0.01, cap_s=0.05)


def prompts(n: int) -> list[Any]:
    template = load_template()
    views = [TrainingView(i, f"k{i}", "en", f"What is 2+{i}?", "Add them.", f"It is {2 + i}.") for i in range(n)]
    return [template.render(v) for v in views]


@pytest.fixture
def teacher() -> Iterator[Callable[..., tuple[TeacherBackend, StubHandle]]]:
    made: list[tuple[TeacherBackend, StubHandle]] = []

    def make(faults: dict[str, Any] | None = None, **options: Any) -> tuple[TeacherBackend, StubHandle]:
        url, handle = start_stub_server(api_key=KEY, **(faults or {}))
        _MODES.clear()
        options = {"timeout_s": 10.0, "backoff": FAST, "max_retries": 6, "api_key": KEY, **options}
        made.append((TeacherBackend("stub-model", base_url=url, **options), handle))
        return made[-1]

    yield make
    for backend, handle in made:
        backend.close()
        handle.stop()


def test_a_server_that_ignores_response_format_costs_no_repairs(teacher) -> None:
    backend, stub = teacher({"reply": "prose"})
    drafts = backend.generate(prompts(6))
    assert all(d.error is None and d.response.startswith("It is") for d in drafts)
    assert backend.counters["repairs"] == 0 and stub.stats()["requests"] == 6
    assert backend.response_mode == "text"
    assert backend.mode_report().startswith("text (the server ignored response_format json_schema")


def test_a_server_that_honours_response_format_keeps_it(teacher) -> None:
    backend, _ = teacher()
    backend.generate(prompts(2))
    assert backend.mode_report() == "json_schema (honoured by the server)"


def test_a_server_that_queues_gets_a_few_requests_not_the_ceiling(teacher) -> None:
    backend, stub = teacher({"serial": True, "latency_s": 0.05}, concurrency=64, initial_concurrency=4)
    drafts = backend.generate(prompts(120))
    assert all(d.error is None for d in drafts)
    state = backend.concurrency_state()
    # Real time on a shared machine: the client's own delays count as latency too, so the bound is loose; the
    # exact dynamics are tested on virtual time in test_concurrency.py.
    assert state is not None and state.limit <= 16, state
    assert stub.stats()["max_in_flight"] <= 32  # without the limiter: 64 waiting in the server's queue
    assert backend.counters["timeout"] == 0


def test_the_same_server_without_the_limiter_queues_the_ceiling(teacher) -> None:
    backend, stub = teacher({"serial": True, "latency_s": 0.005}, concurrency=64, adaptive=False)
    backend.generate(prompts(80))
    assert stub.stats()["max_in_flight"] >= 48


def test_a_prompt_that_cannot_fit_the_context_fails_before_sending(teacher) -> None:
    backend, stub = teacher({"context_length": 300}, max_tokens=1024)
    [draft] = backend.generate(prompts(1))
    assert draft.failed and draft.error.startswith("not sent: the prompt (~")
    assert "exceeds the model's context of 300 tokens (server)" in draft.error
    assert stub.stats().get("requests", 0) == 0


def test_a_truncated_reply_is_not_retried_past_the_context(teacher) -> None:
    backend, stub = teacher({"context_length": 420, "length_rate": 1.0}, max_tokens=150)
    [draft] = backend.generate(prompts(1))
    assert draft.failed and "truncated" in draft.error
    assert stub.stats().get("status_400", 0) == 0  # never asked for more than the context holds
    assert stub.stats()["requests"] <= 2


def test_a_permanent_error_opens_the_breaker_after_n_requests_not_retries_times_records(teacher) -> None:
    message = f"model has no chat template (key {KEY})"
    backend, stub = teacher({"error_rate": 1.0, "error_message": message}, concurrency=4, breaker_threshold=5)
    drafts = backend.generate(prompts(30))
    assert all(d.failed for d in drafts)
    assert stub.stats()["requests"] <= 5 + 4  # the threshold, plus what was already in flight
    reason = backend.breaker.open_reason
    assert reason and "5 requests in a row failed with HTTP 500 from the server: model has no chat template" in reason
    assert KEY not in reason and all(KEY not in d.error for d in drafts)
    assert sum("circuit breaker open" in d.error for d in drafts) >= 25
    backend.breaker.reset()  # resume: requests go out again
    stub.configure(error_rate=0.0)
    assert all(d.error is None for d in backend.generate(prompts(3)))


def test_check_against_a_server_that_honours_response_format_and_reports_its_context() -> None:
    import json

    from typer.testing import CliRunner

    from cli.main import app

    url, handle = start_stub_server(context_length=4096, latency_s=0.3)
    try:
        result = CliRunner().invoke(app, ["--openai-base-url", url, "teacher", "check", "--model", "stub-model",
                                          "--in-flight", "4", "--json"])
    finally:
        handle.stop()
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["model_listed"] and report["response_format"] == "honoured (json_schema)"
    assert report["context_length"] == 4096 and report["context"] == "4096 tokens (from server)"
    # 4 in flight took about as long as one: the server runs them together, so it is told it may take more.
    assert report["speedup"] >= 2 and report["suggested_concurrency"] >= 4


def test_check_names_a_refused_key() -> None:
    from typer.testing import CliRunner

    from cli.main import app

    url, handle = start_stub_server(api_key="sk-the-right-one-123456")
    try:
        result = CliRunner(env={"OPENAI_API_KEY": "sk-the-wrong-one-654321"}).invoke(
            app, ["--openai-base-url", url, "teacher", "check"])
    finally:
        handle.stop()
    assert result.exit_code == 6
    assert "the server refused the key" in " ".join(result.output.split())
    assert "sk-the-wrong-one-654321" not in result.output


def test_a_server_that_is_not_running_opens_the_breaker_with_a_message_that_says_so() -> None:
    """Nothing listens at the endpoint: the aiohttp transport reports the refused connection as a connect timeout,
    which alone would cost every draft its seven attempts and say only "Request timed out"."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _MODES.clear()
    backend = TeacherBackend("stub-model", base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, backoff=FAST,
                             max_retries=6, concurrency=4, breaker_threshold=5, timeout_s=10.0)
    try:
        drafts = backend.generate(prompts(30))
    finally:
        backend.close()
    reason = backend.breaker.open_reason
    assert reason and "5 requests in a row failed with cannot connect to the server" in reason, reason
    assert "is OPENAI_BASE_URL right?" in reason and "timed out" not in reason
    assert sum("circuit breaker open" in (d.error or "") for d in drafts) >= 25

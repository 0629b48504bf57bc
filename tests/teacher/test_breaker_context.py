"""The breaker's rules, the server's error message, and the context arithmetic (no server needed)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from generation import context as ctx
from generation.breaker import Breaker, CircuitOpen, classify, server_message
from generation.parse import parse_draft

KEY = "sk-live-abcdef0123456789"


def status_error(status: int, body: object) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    text = body if isinstance(body, str) else json.dumps(body)
    response = httpx.Response(status, request=request, text=text)
    cls = {429: openai.RateLimitError, 500: openai.InternalServerError, 404: openai.NotFoundError}.get(
        status, openai.APIStatusError)
    return cls(f"Error code: {status}", response=response, body=body)


def test_the_server_message_is_read_from_the_body_redacted_and_short() -> None:
    exc = status_error(500, {"error": {"message": f"upstream refused key {KEY}: " + "x" * 500}})
    message = server_message(exc, KEY)
    assert KEY not in message and "[redacted]" in message and len(message) <= 300
    assert server_message(status_error(500, "Internal Server Error")) == "Internal Server Error"


def test_the_same_failure_n_times_in_a_row_opens_the_breaker() -> None:
    breaker = Breaker(threshold=3)
    boom = classify(status_error(500, "Internal Server Error"))
    for _ in range(2):
        breaker.failure(boom)
    breaker.check()  # two: still closed
    breaker.failure(boom)
    with pytest.raises(CircuitOpen, match="3 requests in a row failed with HTTP 500 from the server: Internal"):
        breaker.check()
    breaker.reset()
    breaker.check()


def test_different_failures_successes_timeouts_and_429s_do_not_make_a_streak() -> None:
    breaker = Breaker(threshold=2)
    breaker.failure(classify(status_error(500, "disk full")))
    breaker.failure(classify(status_error(500, "model not loaded")))  # another message: a new streak
    breaker.failure(classify(status_error(429, {"error": {"message": "slow down"}})))  # load: not counted
    breaker.failure(classify(openai.APITimeoutError(httpx.Request("POST", "http://x"))))
    assert breaker.open_reason is None and breaker.state()["streak"] == 1
    breaker.success()
    breaker.failure(classify(status_error(500, "model not loaded")))
    assert breaker.open_reason is None


def test_context_length_from_the_server_the_setting_or_the_local_config(tmp_path) -> None:
    vllm = {"data": [{"id": "m", "max_model_len": 4096}]}
    llamacpp = {"data": [{"id": "m", "meta": {"n_ctx_train": 8192}}]}
    assert ctx.from_models_payload(vllm, "m") == 4096 and ctx.from_models_payload(llamacpp, "m") == 8192
    assert ctx.from_models_payload(vllm, "other") is None
    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 2048}))
    assert ctx.resolve(4096, 1000, str(tmp_path)) == ctx.ContextInfo(4096, "server")
    assert ctx.resolve(None, 1000, str(tmp_path)) == ctx.ContextInfo(1000, "setting")
    assert ctx.resolve(None, None, str(tmp_path)) == ctx.ContextInfo(2048, "local config")
    assert ctx.resolve(None, None, "gpt-4o-mini").length is None


def test_a_request_that_cannot_fit_says_the_sizes() -> None:
    info = ctx.ContextInfo(2048, "local config")
    ctx.check_fits(1000, 1024, info)
    with pytest.raises(ctx.DoesNotFit, match=r"~1500 tokens\) plus max_tokens=1024 exceeds the model's context of 2048"):
        ctx.check_fits(1500, 1024, info)
    ctx.check_fits(10**6, 1024, ctx.ContextInfo(None, "unknown"))  # unknown: the server decides
    assert ctx.room(1500, info) == 548


def test_the_estimate_is_calibrated_by_the_servers_usage() -> None:
    counter = ctx.TokenCounter("gpt-4o-mini")  # no tokenizer on disk: the script-aware estimate
    messages = [{"role": "user", "content": "x" * 4500}]
    assert counter.count(messages) == 8 + 1000
    counter.calibrate(messages, 8 + 2000)  # this server counts twice as many
    assert counter.count(messages) == 8 + 2000


@pytest.mark.parametrize("reply", [
    'Sure, here it is: {"transformed_input": "Q", "reasoning": "R", "response": "A"} Hope this helps.',
    'Here:\n```json\n{"transformed_input": "Q", "reasoning": "R", "response": "A"}\n```',
    "Transformed input: Q\nReasoning: R\nResponse: A",
])
def test_replies_of_servers_that_ignore_response_format_parse_leniently(reply: str) -> None:
    assert parse_draft(reply) == {"transformed_input": "Q", "reasoning": "R", "response": "A"}


def test_a_chunk_starting_just_after_the_breaker_opened_does_not_close_it() -> None:
    breaker = Breaker(threshold=1)
    breaker.failure(classify(status_error(500, "Internal Server Error")))
    breaker.reset_if_stale(5.0)  # a lane starting its next chunk in the same moment
    assert breaker.open_reason is not None
    breaker.reset_if_stale(0.0)  # the batch was resumed later
    assert breaker.open_reason is None

import json
import urllib.request

import openai
import pytest
from openai import OpenAI

from reasongen.testing.openai_server import spawn_stub_process

PROMPT = "Instruction: Sum them.\n\nInput (English):\n2 and 3\n\nReference answer:\nThe sum is 5."


def _ask(client, content=PROMPT, **kw):
    return client.chat.completions.create(model="m", messages=[{"role": "user", "content": content}], **kw)


def test_stub_answers_a_json_draft_with_usage_and_counts_faults(stub):
    url, handle = stub(api_key="sk-test-key", script=["error", "ratelimit"])
    client = OpenAI(base_url=url, api_key="sk-test-key", max_retries=0)
    with pytest.raises(openai.InternalServerError):
        _ask(client)
    with pytest.raises(openai.RateLimitError):
        _ask(client)
    reply = _ask(client)
    draft = json.loads(reply.choices[0].message.content)
    assert draft == {**draft, "transformed_input": "2 and 3", "response": "The sum is 5."}
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    with pytest.raises(openai.AuthenticationError):
        _ask(OpenAI(base_url=url, api_key="wrong", max_retries=0))
    stats = handle.stats()
    assert (stats["status_500"], stats["status_429"], stats["status_200"]) == (1, 1, 1)
    assert (stats["auth_ok"], stats["auth_bad"]) == (3, 1)


def test_stub_rate_limit_answers_429_with_retry_after(stub):
    url, handle = stub(rps_limit=1, rps_burst=1)
    client = OpenAI(base_url=url, api_key="k", max_retries=0)
    _ask(client)
    with pytest.raises(openai.RateLimitError) as caught:
        _ask(client)
    assert int(caught.value.response.headers["retry-after"]) >= 1
    assert handle.stats()["status_429"] == 1


def test_stub_faults_by_marker_truncation_refusal_and_schema_rejection(stub):
    url, _ = stub(reject_json_schema=True)
    client = OpenAI(base_url=url, api_key="k", max_retries=0)
    assert _ask(client, PROMPT + " [[stub:length]]").choices[0].finish_reason == "length"
    assert _ask(client, PROMPT + " [[stub:refusal]]").choices[0].message.refusal
    bad = _ask(client, PROMPT + " [[stub:malformed:once]]").choices[0].message.content
    with pytest.raises(json.JSONDecodeError):
        json.loads(bad)
    json.loads(_ask(client, PROMPT + " [[stub:malformed:once]]").choices[0].message.content)
    schema = {"type": "json_schema", "json_schema": {"name": "d", "schema": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError):
        _ask(client, response_format=schema)


def test_stub_runs_as_a_process_with_its_faults():
    url, proc = spawn_stub_process(api_key="sk-proc-key", script=["error"], reject_json_schema=True)
    try:
        client = OpenAI(base_url=url, api_key="sk-proc-key", max_retries=0)
        with pytest.raises(openai.InternalServerError):
            _ask(client)
        assert json.loads(_ask(client).choices[0].message.content)["response"] == "The sum is 5."
        with urllib.request.urlopen(url.replace("/v1", "/stats"), timeout=5) as reply:
            stats = json.load(reply)
        assert (stats["status_500"], stats["status_200"], stats["auth_ok"]) == (1, 1, 2)
    finally:
        proc.terminate()
        proc.wait(10)


def test_stub_drop_and_hang_reach_the_client_as_connection_errors_and_in_flight_is_counted(stub):
    url, handle = stub(script=["drop", "hang"], latency_s=0.3)
    client = OpenAI(base_url=url, api_key="k", max_retries=0, timeout=1.5)
    with pytest.raises(openai.APIConnectionError):
        _ask(client)
    with pytest.raises(openai.APITimeoutError):
        _ask(client)
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda _: _ask(client), range(4)))
    assert all(r.choices[0].finish_reason == "stop" for r in replies)
    stats = handle.stats()
    # Four answers overlapped in the latency; the hung handler ended when its client gave up.
    assert stats["max_in_flight"] == 4 and stats["max_requests_in_flight"] >= 4
    assert stats["in_flight"] == 0 and stats["requests_in_flight"] == 0
    assert (stats["fault_drop"], stats["fault_hang"], stats["status_200"]) == (1, 1, 4)

"""The teacher backend against the loopback stub: the real SDK over real sockets."""

import logging

import pytest

from generation.backends import create_backend
from generation.backends.teacher import _MODES, TeacherBackend
from generation.records import TrainingView
from generation.retry import Backoff
from generation.templates import load_template
from reasongen.settings import Settings

KEY = "sk-test-9f8e7d6c5b4a"
FAST = Backoff(base_s=0.01, cap_s=0.05)


def _prompts(n=1, marker=""):
    template = load_template()
    views = [TrainingView(i, f"k{i}", "en", f"What is 2+{i}?{marker}", "Add them.", f"It is {2 + i}.")
             for i in range(n)]
    return [template.render(v) for v in views]


@pytest.fixture
def teacher(stub):
    made = []

    def make(faults=None, **options):
        url, handle = stub(api_key=KEY, **(faults or {}))
        _MODES.clear()
        options = {"timeout_s": 2.0, "backoff": FAST, "max_retries": 3, "api_key": KEY, **options}
        backend = TeacherBackend("gpt-4o-mini", base_url=url, prices={"gpt-4o-mini": (0.15, 0.60)}, **options)
        made.append(backend)
        return backend, handle

    yield make
    for backend in made:
        backend.close()


TRANSPORTS = pytest.mark.parametrize("transport", ["httpx", "auto"])  # auto is aiohttp when installed


@TRANSPORTS
def test_429_with_retry_after_then_success(teacher, transport):
    backend, stub = teacher({"script": ["ratelimit", "ratelimit"]}, transport=transport)
    [draft] = backend.generate(_prompts())
    assert draft.error is None and draft.response == "It is 2."
    assert stub.stats()["status_429"] == 2 and backend.counters["rate_limited"] == 2
    assert draft.extra["attempts"] == 3


@TRANSPORTS
def test_500_is_retried_and_gives_up_after_max_retries(teacher, transport):
    backend, stub = teacher({"script": ["error"] * 10}, max_retries=2, transport=transport)
    [draft] = backend.generate(_prompts())
    assert draft.failed and "gave up after 3 attempts" in draft.error and "500" in draft.error
    assert stub.stats()["status_500"] == 3


@TRANSPORTS
def test_hanging_request_times_out_then_succeeds(teacher, transport):
    backend, stub = teacher({"script": ["hang"]}, timeout_s=0.5, transport=transport)
    [draft] = backend.generate(_prompts())
    assert draft.error is None and backend.counters["timeout"] == 1
    assert 0.5 <= draft.latency_s < 5


@TRANSPORTS
def test_dropped_connection_is_retried(teacher, transport):
    backend, _ = teacher({"script": ["drop"]}, transport=transport)
    [draft] = backend.generate(_prompts())
    assert draft.error is None and backend.counters["connection"] == 1, backend.counters


def test_malformed_json_is_repaired_once(teacher):
    backend, _ = teacher({"script": ["malformed"]})
    [draft] = backend.generate(_prompts())
    assert draft.error is None and backend.counters["repairs"] == 1


def test_malformed_twice_fails_keeping_the_raw_text(teacher):
    backend, _ = teacher({"script": ["malformed", "malformed"]})
    [draft] = backend.generate(_prompts())
    assert draft.failed and draft.error.startswith("malformed JSON after one repair attempt")
    assert draft.raw_text.endswith("<<not json") and draft.finish_reason == "malformed"


def test_truncated_output_retries_with_a_larger_budget_then_fails(teacher):
    backend, stub = teacher({"script": ["length"]})
    [ok] = backend.generate(_prompts())
    assert ok.error is None and backend.counters["budget_retries"] == 1
    small, _ = teacher(max_tokens=10)  # the stub's draft needs ~60 tokens: 10 and 20 both truncate
    [cut] = small.generate(_prompts())
    assert cut.failed and "finish_reason=length" in cut.error and "max_tokens=20" in cut.error
    assert cut.finish_reason == "length" and cut.raw_text


def test_refusal_becomes_a_failed_draft_with_the_reason(teacher):
    backend, _ = teacher({"script": ["refusal", "refusal"]})
    [draft] = backend.generate(_prompts())
    assert draft.failed and draft.error.startswith("refused: I'm sorry")


def test_json_schema_rejected_falls_back_and_is_remembered(teacher):
    backend, stub = teacher({"reject_json_schema": True, "reject_json_object": True})
    drafts = backend.generate(_prompts(3))
    assert all(d.error is None for d in drafts) and backend.response_mode == "text"
    rejected = stub.stats()["status_400"]
    assert 2 <= rejected <= 6  # only the requests in flight when the server first said no
    backend.generate(_prompts(3))
    assert stub.stats()["status_400"] == rejected


def test_cost_and_tokens_come_from_usage_and_the_price_table(teacher):
    backend, _ = teacher()
    [draft] = backend.generate(_prompts())
    assert draft.prompt_tokens > 0 and draft.completion_tokens > 0
    expected = (draft.prompt_tokens * 0.15 + draft.completion_tokens * 0.60) / 1e6
    assert draft.cost_usd == pytest.approx(expected)


def test_many_in_flight_at_once(teacher):
    backend, stub = teacher({"latency_s": 0.3}, concurrency=200)
    drafts = backend.generate(_prompts(200))
    assert all(d.error is None for d in drafts)
    assert stub.stats()["max_in_flight"] >= 150


def test_wrong_key_fails_without_retrying_and_without_the_key(teacher, caplog):
    caplog.set_level(logging.DEBUG)
    backend, stub = teacher(api_key="sk-wrong-0123456789")
    [draft] = backend.generate(_prompts())
    # one chat request, never retried (the other 401 is the one-off /models look-up for the context length)
    assert draft.failed and "401" in draft.error and backend.counters["requests"] == 1
    assert stub.stats()["auth_bad"] == 2
    assert "sk-wrong-0123456789" not in draft.error + caplog.text + repr(backend)


def test_from_settings_uses_the_secret_key_and_never_shows_it(stub, caplog):
    caplog.set_level(logging.DEBUG)
    url, handle = stub(api_key=KEY)
    conf = Settings(openai_base_url=url, openai_api_key=KEY, database_url="sqlite://", redis_url=None)
    backend = create_backend("teacher", conf)
    try:
        [draft] = backend.generate(_prompts())
    finally:
        backend.close()
    assert draft.error is None and handle.stats()["auth_ok"] == 2  # the chat request and the /models look-up
    assert KEY not in repr(conf) + repr(backend) + caplog.text


def test_agenerate_runs_on_the_callers_loop(teacher):
    import asyncio

    backend, _ = teacher()

    async def run():
        try:
            return await backend.agenerate(_prompts(3))
        finally:
            await backend.aclose()

    assert [d.response for d in asyncio.run(run())] == ["It is 2.", "It is 3.", "It is 4."]


def test_a_forked_child_gets_its_own_loop(teacher):
    import multiprocessing

    backend, _ = teacher()
    backend.generate(_prompts(1))  # the parent's loop thread now exists
    ctx = multiprocessing.get_context("fork")
    results = ctx.SimpleQueue()
    child = ctx.Process(target=lambda: results.put(_child_generate(backend)))
    child.start()
    child.join(30)
    assert child.exitcode == 0 and results.get() == ["It is 2."]


def _child_generate(backend):
    return [d.response for d in backend.generate(_prompts(1))]


def test_retry_after_is_honoured_not_hammered(teacher):
    backend, stub = teacher({"rps_limit": 1, "rps_burst": 1}, concurrency=1, backoff=FAST)
    drafts = backend.generate(_prompts(2))
    assert all(d.error is None for d in drafts)
    assert stub.stats()["status_429"] == 1  # the FAST backoff alone would have hit the limit many times
    assert drafts[1].latency_s >= 0.8


def test_the_in_process_limiter_keeps_under_the_server_limit(teacher):
    from generation.ratelimit import LocalLimiter, Rates

    limiter = LocalLimiter(Rates(requests_per_s=20, burst_s=0.05))
    backend, stub = teacher({"rps_limit": 20, "rps_burst": 4}, limiter=limiter, concurrency=32)
    assert all(d.error is None for d in backend.generate(_prompts(30)))
    assert stub.stats().get("status_429", 0) == 0 and stub.stats()["status_200"] == 30


def test_json_object_is_used_when_only_json_schema_is_refused(teacher):
    backend, stub = teacher({"reject_json_schema": True})
    [draft] = backend.generate(_prompts())
    assert draft.error is None and backend.response_mode == "json_object" and stub.stats()["status_400"] == 1


def test_clients_are_closed_when_the_backend_is_collected(stub):
    import gc

    url, _ = stub()
    backend = TeacherBackend("m", base_url=url, api_key="k")
    backend.generate(_prompts(2))
    clients = [c for slots in backend._sessions.values() for c in slots.clients]
    del backend
    gc.collect()
    assert clients and all(c.is_closed() for c in clients)

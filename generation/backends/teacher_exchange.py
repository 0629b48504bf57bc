"""One draft's exchange with the teacher's server, the half of the teacher backend below its entry points.

A draft is checked to fit the context, sent, resent once with a doubled token budget when it was cut short,
parsed leniently and repaired once when malformed. Each request waits for the throttle's place, passes the
circuit breaker, and is retried within bounds; a 400/422 about response_format steps the process down one
structured-output mode (json_schema -> json_object -> text). What cannot be drafted raises TeacherFailure,
which the draft turns into a failed DraftResult naming the reason (the key redacted).

generation/backends/teacher.py builds the backend (settings, clients per event loop, closing) on this class;
judging/teacher.py overrides ``_post`` and ``_parsed`` to ask for and read a judgement instead.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import weakref
from collections import Counter
from dataclasses import dataclass
from typing import Any

import openai
from pydantic import SecretStr

from generation import context as ctx
from generation.backends.base import Prompt
from generation.backends.chat_format import (
    MODES, REPAIR, ModeMemory, Reply, describe_error, draft_from, format_args, messages_for, observe_reply,
    raw_response_class,
)
from generation.backends.client_pool import ClientSlots
from generation.backends.direct import DirectPost
from generation.breaker import Breaker, CircuitOpen, classify
from generation.parse import parse_draft
from generation.records import DraftResult
from generation.retry import Backoff, redact, retry_after, retry_cause
from generation.throttle import Throttle

# The backend's one logger name, as before this module was split from teacher.py: logging set up by name
# (a deployment's config, a caplog filter) still sees every teacher message.
log = logging.getLogger("generation.backends.teacher")

_FORMAT_ERROR = re.compile(r"response_format|json_schema|json_object|structured|schema|grammar", re.IGNORECASE)
# Per process: (base_url, model) -> the structured-output mode the server honours, and why.
_MODES = ModeMemory()


class TeacherFailure(Exception):
    def __init__(self, reason: str, raw_text: str | None = None, finish_reason: str = "error"):
        super().__init__(reason)
        self.raw_text, self.finish_reason = raw_text, finish_reason


@dataclass
class _Tally:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 0


class TeacherExchange:
    """Drafts one prompt at a time over a client it is handed; TeacherBackend sets these attributes up."""

    model: str
    base_url: str | None
    _api_key: SecretStr | None
    concurrency: int
    timeout_s: float
    max_retries: int
    max_tokens: int
    temperature: float
    seed: int | None
    price: Any
    backoff: Backoff
    throttle: Throttle
    breaker: Breaker
    tokens: ctx.TokenCounter
    counters: Counter[str]
    _context_setting: int | None
    _context: ctx.ContextInfo | None
    _context_asked: weakref.WeakKeyDictionary[Any, asyncio.Task[ctx.ContextInfo]]
    _direct: weakref.WeakKeyDictionary[Any, DirectPost] | None

    @property
    def _mode_key(self) -> tuple[str, str]:
        return (self.base_url or "openai", self.model)

    @property
    def response_mode(self) -> str:
        return _MODES.get(self._mode_key)

    def mode_report(self) -> str:
        """The structured-output mode requests really run in, and why (recorded on the batch)."""
        return _MODES.describe(self._mode_key)

    async def _draft(self, slots: ClientSlots, prompt: Prompt) -> DraftResult:
        tally = _Tally()
        async with slots.slot() as client:
            started = time.monotonic()  # latency of this draft's requests, not of waiting for a slot
            try:
                result = await self._write(client, messages_for(prompt), tally)
            except TeacherFailure as exc:
                result = DraftResult(error=self._redact(str(exc)), raw_text=exc.raw_text,
                                     finish_reason=exc.finish_reason)
            except Exception as exc:  # noqa: BLE001 - one bad record must not sink the sub-batch
                log.exception("teacher draft for record %s failed unexpectedly", prompt.view.record_id)
                result = DraftResult(error=self._redact(f"{type(exc).__name__}: {exc}"), finish_reason="error")
        result.prompt_tokens, result.completion_tokens = tally.prompt_tokens, tally.completion_tokens
        result.cost_usd = self._cost(tally)
        result.latency_s = time.monotonic() - started
        result.extra.update(attempts=tally.attempts, mode=self.response_mode, priced=self.price is not None)
        return result

    async def context_info(self, client: openai.AsyncOpenAI | None = None) -> ctx.ContextInfo:
        """Asked once: the server's /v1/models, else the setting, else the model's local config."""
        if self._context is None:
            loop = asyncio.get_running_loop()
            if loop not in self._context_asked:  # the first draft asks; the others wait for its answer
                self._context_asked[loop] = loop.create_task(self._ask_context(client))
            self._context = await asyncio.shield(self._context_asked[loop])
        return self._context

    async def _ask_context(self, client: openai.AsyncOpenAI | None) -> ctx.ContextInfo:
        # OpenAI's own /models says nothing about context: only self-hosted servers are asked.
        asked = client is not None and self.base_url
        server = await ctx.server_length(client, self.model, min(self.timeout_s, 10.0)) if asked else None
        return ctx.resolve(server, self._context_setting, self.model)

    async def _write(self, client: openai.AsyncOpenAI, messages: list[dict[str, str]], tally: _Tally) -> DraftResult:
        context = await self.context_info(client)
        prompt_tokens = self.tokens.count(messages)
        budget = self.max_tokens
        try:
            ctx.check_fits(prompt_tokens, budget, context)
        except ctx.DoesNotFit as exc:
            raise TeacherFailure(f"not sent: {exc}", finish_reason="too_long") from None
        for round_no in (1, 2):
            reply = await self._complete(client, messages, budget, tally)
            self.tokens.calibrate(messages, reply.prompt_tokens)
            problem = reply.incomplete_reason()
            if problem is None:
                break
            room = ctx.room(prompt_tokens, context)
            bigger = budget * 2 if room is None else min(budget * 2, room)
            if round_no == 2 or bigger <= budget:
                limit = "" if bigger > budget else f"; the {context.length}-token context leaves no room for more"
                raise TeacherFailure(f"{problem} (max_tokens={budget}{limit})", reply.content,
                                     reply.finish_reason or "error")
            self.counters["budget_retries"] += 1
            budget = bigger
        return await self._parsed(client, messages, reply, budget, tally, context)

    async def _parsed(self, client: openai.AsyncOpenAI, messages: list[dict[str, str]], reply: Reply,
                      budget: int, tally: _Tally, context: ctx.ContextInfo) -> DraftResult:
        text = reply.content or ""
        if observe_reply(_MODES, self._mode_key, text):
            self.counters["mode_ignored"] += 1
            log.warning("%s ignores response_format: parsing its replies leniently from now on", self.model)
        try:  # leniently first, whatever the mode: JSON in prose or fences, labelled sections
            return draft_from(parse_draft(text), text, reply.finish_reason)
        except ValueError as exc:
            error = str(exc)
        repair = [*messages, {"role": "assistant", "content": text},
                  {"role": "user", "content": REPAIR.format(error=error[:200])}]
        try:
            ctx.check_fits(self.tokens.count(repair), budget, context, "the repair prompt")
        except ctx.DoesNotFit as exc:
            raise TeacherFailure(f"malformed reply ({error}); no repair sent: {exc}", text, "malformed") from None
        self.counters["repairs"] += 1
        fixed = await self._complete(client, repair, budget, tally)
        try:
            return draft_from(parse_draft(fixed.content or ""), fixed.content, fixed.finish_reason)
        except ValueError as exc:
            raise TeacherFailure(f"malformed JSON after one repair attempt: {exc}", text, "malformed") from None

    async def _complete(self, client: openai.AsyncOpenAI, messages: list[dict[str, str]], max_tokens: int,
                        tally: _Tally) -> Reply:
        last: BaseException | None = None
        for attempt in range(self.max_retries + 1):
            mode = self.response_mode
            try:
                return await self._request(client, messages, max_tokens, mode, tally)
            except CircuitOpen as exc:
                raise TeacherFailure(str(exc), finish_reason="breaker") from None
            except Exception as exc:  # noqa: BLE001 - classified below
                last = exc
                if self._fell_back(exc, mode):
                    continue
                cause = retry_cause(exc)
                if cause is None:
                    raise TeacherFailure(self._describe(exc)) from None
                if self.breaker.open_reason:  # this very failure opened it: stop retrying now
                    raise TeacherFailure(self.breaker.open_reason, finish_reason="breaker") from None
                await self._wait_before_retry(exc, cause, attempt)
        raise TeacherFailure(f"gave up after {self.max_retries + 1} attempts; last error: {self._describe(last)}")

    async def _request(self, client: openai.AsyncOpenAI, messages: list[dict[str, str]], max_tokens: int,
                       mode: str, tally: _Tally) -> Reply:
        self.breaker.check()
        estimate = self.tokens.count(messages) + max_tokens  # the limiter's reservation, settled from usage
        body = {"model": self.model, "messages": messages, "max_tokens": max_tokens,
                "temperature": self.temperature, **format_args(mode)}
        if self.seed is not None:
            body["seed"] = self.seed
        permit = await self.throttle.acquire(estimate)
        if self.breaker.open_reason:  # it opened while this request waited for its place
            self.throttle.cancel(permit)
            self.breaker.check()
        tally.attempts += 1
        self.counters["requests"] += 1
        try:
            raw = await self._post(client, body)
        except Exception as exc:
            await self.throttle.failed(permit, exc)
            self.breaker.failure(classify(exc, self._secret()))
            raise
        except BaseException:
            self.throttle.cancel(permit)
            raise
        try:
            reply = Reply.from_body(raw)
        except ValueError as exc:
            self.throttle.cancel(permit)
            raise TeacherFailure(f"the server's reply is not a chat completion: {exc}") from None
        self.breaker.success()
        tally.prompt_tokens += reply.prompt_tokens
        tally.completion_tokens += reply.completion_tokens
        await self.throttle.succeeded(permit, estimate, reply.total_tokens)
        return reply

    async def _post(self, client: openai.AsyncOpenAI, body: dict[str, Any]) -> bytes:
        # The SDK's documented raw path: the same auth, timeouts and typed errors as chat.completions.create,
        # without its per-call walk over the parameter types and the model objects it builds for the reply,
        # which together are a third of the client's CPU per request.
        # The SDK timeout bounds each read; this bounds the whole call, so nothing hangs.
        async with asyncio.timeout(self.timeout_s * 1.5 + 1):
            if self._direct is not None:
                return await self._poster(client).post(body)
            response = await client.post("/chat/completions", cast_to=raw_response_class(), body=body,
                                         options={"timeout": self.timeout_s})
            return await response.aread()  # type: ignore[no-any-return]

    def _poster(self, client: openai.AsyncOpenAI) -> DirectPost:
        assert self._direct is not None
        poster = self._direct.get(client)
        if poster is None:  # made on the client's own loop, as its connections must be
            poster = self._direct[client] = DirectPost(client, self.concurrency, self.timeout_s)
        return poster

    def _fell_back(self, exc: BaseException, mode: str) -> bool:
        """A 400/422 about response_format: step down one mode for the whole process and try again."""
        status = getattr(exc, "status_code", None)
        if mode == "text" or status not in (400, 422) or not _FORMAT_ERROR.search(str(exc)):
            return False
        fallback = MODES[MODES.index(mode) + 1]
        _MODES.set(self._mode_key, fallback, f"the server rejected response_format {mode}")
        self.counters["mode_fallbacks"] += 1
        log.warning("server rejected response_format %s; using %s for %s from now on", mode, fallback, self.model)
        return True

    async def _wait_before_retry(self, exc: BaseException, cause: str, attempt: int) -> None:
        self.counters[cause] += 1
        self.counters["retries"] += 1
        if cause in ("rate_limited", "status_503"):  # the throttle holds every caller for Retry-After already
            log.debug("teacher request: %s, retrying after the throttle's hold (attempt %d)", cause, attempt + 1)
            return
        delay = self.backoff.delay(attempt, retry_after(exc))
        log.debug("teacher request: %s, retrying in %.2fs (attempt %d)", cause, delay, attempt + 1)
        if attempt < self.max_retries:
            await asyncio.sleep(delay)

    def _describe(self, exc: BaseException | None) -> str:
        failure = classify(exc, self._secret()) if exc is not None else None
        return failure.message if failure else describe_error(exc)

    def _cost(self, tally: _Tally) -> float:
        if not self.price:
            return 0.0
        per_prompt, per_completion = self.price
        return float(tally.prompt_tokens * per_prompt + tally.completion_tokens * per_completion) / 1_000_000

    def _secret(self) -> str | None:
        return self._api_key.get_secret_value() if self._api_key else None

    def _redact(self, text: str) -> str:
        return redact(text, self._secret())

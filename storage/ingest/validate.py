"""Validation: a raw row -> a SourceRecord, or a Rejection that says what is wrong with it."""

from __future__ import annotations

from typing import Any

import orjson

from storage.ingest.types import LANGUAGES, RawRecord, Rejection, SourceRecord

KNOWN_FIELDS = frozenset(("id", "lang", "instruction", "input", "output", "field", "uniqueness"))
# Column widths in storage.models.Record: longer values would fail the whole batch in PostgreSQL.
MAX_LENGTHS = {"id": 200, "field": 200, "uniqueness": 50}


class InvalidRecord(ValueError):
    """Raised inside validation; becomes a Rejection for the row."""


class Validator:
    """Checks shape, types and size. Language detection and hashing are later stages."""

    def __init__(self, max_record_bytes: int):
        self.max_record_bytes = max_record_bytes

    def __call__(self, raw: RawRecord) -> SourceRecord | Rejection:
        try:
            return self._check(raw)
        except InvalidRecord as exc:
            return Rejection(raw.file, raw.line, str(exc))

    def _check(self, raw: RawRecord) -> SourceRecord:
        data = raw.data
        size = raw.size if raw.size is not None else _estimated_size(data)
        if size > self.max_record_bytes:
            raise InvalidRecord(f"record is {size} bytes, over the limit of {self.max_record_bytes} (--max-record-bytes)")
        meta = {} if data.keys() <= KNOWN_FIELDS else {k: v for k, v in data.items() if k not in KNOWN_FIELDS}
        record = SourceRecord(
            file=raw.file,
            line=raw.line,
            key=_key(data.get("id")),
            lang=_lang(data.get("lang")),
            instruction=_required(data, "instruction"),
            input=_optional(data, "input") or "",
            output=_required(data, "output"),
            field=_optional(data, "field"),
            uniqueness=_optional(data, "uniqueness"),
            meta=meta,
        )
        if meta and b"\\u0000" in orjson.dumps(meta, default=str):
            raise InvalidRecord("contains a NUL character in its metadata")
        return record


def _estimated_size(data: dict[str, Any]) -> int:
    return len(orjson.dumps(data, default=str))


def _required(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if value is None:
        raise InvalidRecord(f"missing required field '{name}'")
    value = _string(name, value)
    if not value.strip():
        raise InvalidRecord(f"required field '{name}' is empty")
    return value


def _optional(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    value = _string(name, value)
    limit = MAX_LENGTHS.get(name)
    if limit and len(value) > limit:
        raise InvalidRecord(f"field '{name}' is longer than {limit} characters")
    return value


def _string(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidRecord(f"field '{name}' must be a string, got {type(value).__name__}")
    if "\x00" in value:
        raise InvalidRecord(f"field '{name}' contains a NUL character")
    return value


def _key(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidRecord(f"field 'id' must be a string or an integer, got {type(value).__name__}")
    value = _string("id", value).strip()
    if len(value) > MAX_LENGTHS["id"]:
        raise InvalidRecord(f"field 'id' is longer than {MAX_LENGTHS['id']} characters")
    return value or None


def _lang(value: Any) -> str | None:
    """'ja', 'JA', 'ja-JP', 'zh_Hans' -> the bare code; None means detect it later."""
    if value is None or value in LANGUAGES:
        return None if value is None else str(value)
    text = _string("lang", value).strip()
    if not text:
        return None
    code = text.replace("_", "-").split("-")[0].lower()
    if code not in LANGUAGES:
        raise InvalidRecord(f"unknown language {text!r} (expected {', '.join(LANGUAGES)})")
    return code

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


def parse_columns(pairs: list[str]) -> dict[str, str]:
    """``["output=response", "input=context"]`` (or one comma-separated string) -> {field: source column}."""
    columns: dict[str, str] = {}
    for pair in (p.strip() for item in pairs for p in item.split(",") if p.strip()):
        name, sep, column = (part.strip() for part in pair.partition("="))
        if not sep or not name or not column:
            raise ValueError(f"--map {pair!r}: use FIELD=COLUMN, e.g. --map output=response")
        if name not in KNOWN_FIELDS:
            raise ValueError(f"--map {pair!r}: {name!r} is not a record field ({', '.join(sorted(KNOWN_FIELDS))})")
        if name in columns:
            raise ValueError(f"--map names {name!r} twice")
        columns[name] = column
    return columns


class Validator:
    """Checks shape, types and size. Language detection and hashing are later stages. ``columns`` maps record
    fields to the file's own column names (Dolly's ``response`` as ``output``, say)."""

    def __init__(self, max_record_bytes: int, columns: dict[str, str] | None = None):
        self.max_record_bytes = max_record_bytes
        self.columns = columns or {}

    def __call__(self, raw: RawRecord) -> SourceRecord | Rejection:
        try:
            return self._check(raw)
        except InvalidRecord as exc:
            return Rejection(raw.file, raw.line, str(exc))

    def _check(self, raw: RawRecord) -> SourceRecord:
        data = _renamed(raw.data, self.columns) if self.columns else raw.data
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


def _renamed(data: dict[str, Any], columns: dict[str, str]) -> dict[str, Any]:
    """The mapped columns under the field names. A key that already had a mapped field's name is kept in the
    metadata as ``<name>_original`` rather than dropped."""
    out = {k: v for k, v in data.items() if k not in columns.values()}
    for name, column in columns.items():
        if name in out:
            out[f"{name}_original"] = out.pop(name)
        if column in data:
            out[name] = data[column]
    return out


def _estimated_size(data: dict[str, Any]) -> int:
    return len(orjson.dumps(data, default=str))


def _required(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if value is None:
        others = [k for k in data if k not in KNOWN_FIELDS][:8]
        hint = f" (this row has: {', '.join(others)}; map a column with --map {name}=COLUMN)" if others else ""
        raise InvalidRecord(f"missing required field '{name}'{hint}")
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

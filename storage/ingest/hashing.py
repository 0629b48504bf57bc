"""Content hashes and derived ids.

The content hash covers everything a draft depends on (language, texts, tags, metadata), so a draft
whose record_hash differs from its record's content_hash is stale. A record without an id gets one
derived from its question (instruction + input): fixing the answer later keeps the same id.
"""

from __future__ import annotations

import hashlib
import orjson

from storage.ingest.types import SourceRecord


def content_hash(record: SourceRecord) -> str:
    payload = [record.lang, record.instruction, record.input, record.output, record.field, record.uniqueness,
               record.meta]
    return hashlib.sha256(orjson.dumps(payload, default=str, option=orjson.OPT_SORT_KEYS)).hexdigest()


def derived_key(instruction: str, input_text: str) -> str:
    digest = hashlib.sha256(f"{instruction}\x1f{input_text}".encode()).hexdigest()
    return f"h-{digest[:24]}"


def fill_hash(record: SourceRecord) -> SourceRecord:
    r = record  # built directly: dataclasses.replace costs more than the hash itself on this hot path
    key = r.key or derived_key(r.instruction, r.input)
    return SourceRecord(r.file, r.line, key, r.lang, r.instruction, r.input, r.output, r.field, r.uniqueness, r.meta,
                        content_hash(r))

"""Small builders shared by tests (no fixtures here)."""

from __future__ import annotations

import hashlib

from storage.models import Record


def add_records(uow, dataset: str, rows: list[dict]) -> list[int]:  # type: ignore[no-untyped-def]
    """Insert records directly (bypassing ingest) and return their ids, committed."""
    ds = uow.records.get_or_create_dataset(dataset)
    ids = []
    for i, row in enumerate(rows):
        body = {"lang": "en", "input": "", "output": "out", **row}
        body.setdefault("key", f"r{i}")
        digest = hashlib.sha256(repr(sorted(body.items())).encode()).hexdigest()
        rec = Record(dataset_id=ds.id, content_hash=digest, meta={}, **body)
        uow.session.add(rec)
        uow.session.flush()
        ids.append(rec.id)
    uow.commit()
    return ids

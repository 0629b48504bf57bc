"""What the chaos run counts at the end, straight from PostgreSQL (the source of truth)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sqlalchemy import text

OUTCOME_SQL = """
WITH batch_records AS (
    SELECT DISTINCT (jsonb_array_elements_text(record_ids))::bigint AS record_id FROM chunks WHERE batch_id = :b
), per_record AS (
    SELECT r.record_id,
           count(d.id) FILTER (WHERE d.is_current AND d.status <> 'failed') AS good_current,
           count(d.id) FILTER (WHERE d.is_current AND d.status = 'failed' AND d.error IS NOT NULL) AS failed_current,
           count(d.id) FILTER (WHERE d.is_current) AS current_drafts,
           count(d.id) AS all_drafts
    FROM batch_records r LEFT JOIN drafts d ON d.record_id = r.record_id
    GROUP BY r.record_id
)
SELECT count(*) AS records,
       count(*) FILTER (WHERE good_current = 1 AND current_drafts = 1) AS one_current_draft,
       count(*) FILTER (WHERE failed_current = 1 AND current_drafts = 1) AS failed_with_reason,
       count(*) FILTER (WHERE current_drafts = 0) AS lost,
       count(*) FILTER (WHERE current_drafts > 1 OR all_drafts > 1) AS duplicated
FROM per_record
"""


def outcome(engine, batch_id: int) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        row = conn.execute(text(OUTCOME_SQL), {"b": batch_id}).mappings().one()
        stuck = conn.execute(text("SELECT count(*) FROM chunks WHERE batch_id = :b AND status NOT IN "
                                  "('done', 'failed', 'cancelled')"), {"b": batch_id}).scalar_one()
        status = conn.execute(text("SELECT status FROM batches WHERE id = :b"), {"b": batch_id}).scalar_one()
    return {**dict(row), "chunks_stuck": stuck, "batch_status": status}


def progress(engine, batch_id: int) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM drafts WHERE batch_id = :b"), {"b": batch_id}).scalar_one()


def secret_leaks(key: str, pg_dump_argv: list[str], folder: Path) -> dict[str, bool]:
    """Where the API key shows up: the database dump, every log, the broker's recorded traffic."""
    dump = subprocess.run(pg_dump_argv, capture_output=True, check=True).stdout
    found = {"database": key.encode() in dump}
    for log in sorted(folder.glob("*.log")):
        found[log.name] = key.encode() in log.read_bytes()
    return found

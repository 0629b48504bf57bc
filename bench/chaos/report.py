"""What the chaos run counts, straight from PostgreSQL (the source of truth)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from sqlalchemy import text

OUTCOME_SQL = """
WITH batch_records AS (
    SELECT DISTINCT (jsonb_array_elements_text(record_ids))::bigint AS record_id FROM chunks WHERE batch_id = :b
), per_record AS (
    SELECT r.record_id,
           count(d.id) FILTER (WHERE d.is_current AND d.status <> 'failed') AS good_current,
           count(d.id) FILTER (WHERE d.is_current AND d.status = 'failed' AND d.error IS NOT NULL) AS failed_current,
           count(d.id) FILTER (WHERE d.is_current) AS current_drafts
    FROM batch_records r LEFT JOIN drafts d ON d.record_id = r.record_id
    GROUP BY r.record_id
)
SELECT count(*) AS records,
       count(*) FILTER (WHERE good_current = 1 AND current_drafts = 1) AS good,
       count(*) FILTER (WHERE failed_current = 1 AND current_drafts = 1) AS failed_with_reason,
       count(*) FILTER (WHERE current_drafts = 0) AS without_draft
FROM per_record
"""


def outcome(engine, batch_id: int) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Records with a good draft, failed with a reason, and without any terminal draft; the batch's state."""
    with engine.connect() as conn:
        row = conn.execute(text(OUTCOME_SQL), {"b": batch_id}).mappings().one()
        status, finished, limit, why = conn.execute(text(
            "SELECT status, finished_at IS NOT NULL, concurrency_limit, concurrency_reason FROM batches "
            "WHERE id = :b"), {"b": batch_id}).one()
    return {**dict(row), "batch_status": status, "batch_ended": bool(finished),
            "teacher_limit": f"{limit} ({why})" if limit is not None else "n/a"}


TAIL_SQL = """
SELECT c.id, c.status, c.attempts, c.lease_owner,
       round(extract(epoch FROM c.lease_expires_at - now()))::int AS lease_left_s,
       round(extract(epoch FROM now() - c.updated_at))::int AS quiet_s,
       count(*) FILTER (WHERE d.id IS NULL) AS without_draft, left(c.last_error, 80) AS error
FROM chunks c CROSS JOIN LATERAL jsonb_array_elements_text(c.record_ids) AS r(record_id)
LEFT JOIN drafts d ON d.record_id = r.record_id::bigint AND d.is_current
WHERE c.batch_id = :b AND c.status NOT IN ('done', 'failed', 'cancelled')
GROUP BY c.id HAVING count(*) FILTER (WHERE d.id IS NULL) > 0 ORDER BY c.id
"""


def tail(engine, batch_id: int) -> list[str]:  # type: ignore[no-untyped-def]
    """The chunks still holding records without a draft: what the last records of a run wait for."""
    with engine.connect() as conn:
        rows = conn.execute(text(TAIL_SQL), {"b": batch_id}).mappings().all()
    return [f"chunk {r['id']} {r['status']} (attempt {r['attempts']}, {r['lease_owner'] or 'no owner'}, lease "
            f"{r['lease_left_s']} s left, quiet {r['quiet_s']} s): {r['without_draft']} without a draft"
            + (f"; {r['error']}" if r["error"] else "") for r in rows]


FAILURES_SQL = """
SELECT regexp_replace(left(error, 120), '[0-9]+', 'N', 'g') AS reason, count(*) AS records FROM drafts
WHERE batch_id = :b AND is_current AND status = 'failed' GROUP BY 1 ORDER BY 2 DESC LIMIT :n
"""


def failure_reasons(engine, batch_id: int, n: int = 8) -> list[tuple[str, int]]:  # type: ignore[no-untyped-def]
    """The commonest reasons records failed with (digits folded, so one fault reads as one line): to tell the
    injected faults running out of attempts from a product failure."""
    with engine.connect() as conn:
        return [(r[0], int(r[1])) for r in conn.execute(text(FAILURES_SQL), {"b": batch_id, "n": n})]


def progress(engine, batch_id: int) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM drafts WHERE batch_id = :b"), {"b": batch_id}).scalar_one())


def training(engine, batch_id: int) -> dict[str, object]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        runs = conn.execute(text("SELECT id, status, error FROM runs WHERE batch_id = :b"), {"b": batch_id}).all()
        builds = conn.execute(text("SELECT count(*) FROM builds WHERE batch_id = :b"), {"b": batch_id}).scalar_one()
        follow = conn.execute(text("SELECT followup_status, followup_error FROM batches WHERE id = :b"),
                              {"b": batch_id}).one()
        steps = conn.execute(text("SELECT max(step) FROM run_metrics m JOIN runs r ON r.id = m.run_id "
                                  "WHERE r.batch_id = :b AND m.split = 'train'"), {"b": batch_id}).scalar_one()
    return dict(runs=len(runs), run_status=runs[0][1] if runs else None, run_error=runs[0][2] if runs else None,
                builds=int(builds), followup=follow[0], followup_error=follow[1], last_step=steps)


def secret_leaks(key: str, pg_dump_argv: list[str], folder: Path) -> dict[str, bool]:
    """Where the API key shows up: the database dump, every log, the broker's recorded traffic."""
    dump = subprocess.run(pg_dump_argv, capture_output=True, check=True).stdout
    found = {"database": key.encode() in dump}
    for log in sorted(folder.glob("*.log")):
        found[log.name] = key.encode() in log.read_bytes()
    return found


class Rate:
    """A count's rate per second since the last call (the timeline's requests/s)."""

    def __init__(self) -> None:
        self.at, self.count = time.monotonic(), 0

    def __call__(self, count: int) -> float:
        now = time.monotonic()
        per_s = (count - self.count) / max(now - self.at, 1e-6)
        self.at, self.count = now, count
        return per_s

"""Batch-level state changes: finishing a batch exactly once, cancelling, stopping on a budget."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from judging import gate
from reasongen.bootstrap import Wiring
from storage.repositories.batches import OPEN
from storage.models import utcnow as utcnow  # the one definition; re-exported for workers/*
from storage.uow import UnitOfWork

FollowUp = tuple[int, str]  # (batch id, "build" | "train")


@dataclass(frozen=True)
class BatchSpec:
    """What a chunk needs of its batch, copied out of the session (ORM rows expire when the unit of work ends)."""

    id: int
    kind: str
    backend: str
    model: str
    template_name: str
    params: dict[str, Any]
    max_cost_usd: float | None
    max_tokens: int | None
    endpoint: str | None = None  # the teacher's OPENAI_BASE_URL when the batch was made (never the key)
    concurrency_limit: int | None = None  # the teacher's limit its workers last recorded (generation/endpoint_state)

    @classmethod
    def of(cls, batch: Any) -> "BatchSpec":
        return cls(batch.id, batch.kind, batch.backend, batch.model, batch.template_name, dict(batch.params or {}),
                   batch.max_cost_usd, batch.max_tokens, batch.endpoint, getattr(batch, "concurrency_limit", None))


def finalize(uow: UnitOfWork, batch_id: int, now: datetime) -> FollowUp | None:
    """Finish the batch if no chunk is open. Call inside the transaction that closed a chunk.

    The batch row is locked, so of two transactions closing the last two chunks the second sees the first's
    commit; ``finished_at`` and ``followup_enqueued_at`` are set once, and only that caller gets the follow-up.
    """
    batch = uow.batches.lock(batch_id)
    counts = uow.chunks.count(batch_id)
    if batch.finished_at is not None or any(counts.get(s) for s in OPEN):
        return None
    if batch.status == "running":
        failed = counts.get("failed", 0)
        batch.status = "failed" if failed else "done"
        batch.status_reason = f"{failed} chunk(s) failed after repeated attempts" if failed else None
    batch.finished_at = now
    if batch.then and batch.followup_enqueued_at is None and batch.status != "done":
        # Said, not silent: `status` shows it, and `retry-followup` can still run it.
        batch.followup_status, batch.followup_error = "skipped", f"not run: the batch ended {batch.status}"
        return None
    if batch.status == "done" and batch.then and batch.followup_enqueued_at is None:
        batch.followup_status = "pending"
        if not gate.may_fire(uow, batch, now):  # drafts still pending: held for review or `release`
            return None
        batch.followup_enqueued_at = now
        return (batch.id, batch.then)
    return None


def stop_batch(wiring: Wiring, batch_id: int, status: str, reason: str) -> bool:
    """Stop a running batch: queued chunks never start; leased ones stop at their next sub-batch."""
    now = utcnow()
    with wiring.uow() as uow:
        uow.batches.lock(batch_id)
        changed = uow.batches.set_status(batch_id, status, reason)
        if changed:
            uow.chunks.cancel_queued(batch_id, now)
            finalize(uow, batch_id, now)
        uow.commit()
    return changed


def cancel(wiring: Wiring, batch_id: int) -> str:
    """Cancel a batch; returns a one-line description of what happened."""
    if stop_batch(wiring, batch_id, "cancelled", "cancelled by user"):
        return f"batch {batch_id} cancelled: queued chunks will not start, running ones stop at their next sub-batch"
    with wiring.uow() as uow:
        batch = uow.batches.get(batch_id)
        return f"batch {batch_id} is already {batch.status}; nothing to cancel"


def budget_reason(max_cost: float | None, max_tokens: int | None, tokens: int, cost: float) -> str | None:
    if max_cost is not None and cost >= max_cost:
        return f"budget reached: cost ${cost:.4f} of max ${max_cost:.4f}"
    if max_tokens is not None and tokens >= max_tokens:
        return f"budget reached: {tokens} tokens of max {max_tokens}"
    return None


def reopen(wiring: Wiring, batch_id: int, max_cost: float | None = None, max_tokens: int | None = None) -> None:
    """Make a stopped (budget) or cancelled batch run again, optionally with a new budget; its cancelled
    chunks go back to the queue. A running batch only takes the new budget."""
    with wiring.uow() as uow:
        batch = uow.batches.lock(batch_id)
        if batch.status not in ("running", "stopped", "cancelled", "paused"):  # paused: the teacher's breaker
            raise ValueError(f"batch {batch_id} is {batch.status}; nothing to resume")
        if batch.status != "running" and batch.finished_at is None:
            raise ValueError(f"batch {batch_id} is still stopping (chunks finishing a sub-batch); try again shortly")
        batch.max_cost_usd = batch.max_cost_usd if max_cost is None else max_cost
        batch.max_tokens = batch.max_tokens if max_tokens is None else max_tokens
        reason = budget_reason(batch.max_cost_usd, batch.max_tokens, *uow.batch_stats.spend(batch_id))
        if batch.status == "stopped" and max_cost is None and max_tokens is None:
            reason = reason or batch.status_reason  # stopped by a reservation that did not fit: still does not
        if reason:
            raise ValueError(f"batch {batch_id}: {reason}; pass a higher --max-cost or --max-tokens to resume it")
        if batch.status != "running":
            batch.status, batch.status_reason, batch.finished_at = "running", None, None
            uow.chunks.requeue_cancelled(batch_id, utcnow())
        uow.commit()


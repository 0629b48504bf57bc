"""Hard budgets: a sub-batch reserves its estimated cost before it is submitted.

``--max-cost`` / ``--max-tokens`` are checked against what is spent (drafts written) plus what is reserved by
sub-batches in flight (``chunks.reserved_*``, all chunks of the batch, under the batch row lock). A sub-batch
whose estimate does not fit is not sent, and the batch stops. So spend past the limit is bounded by the
difference between the reserved estimates and the real cost of the sub-batches in flight at that moment:
the estimate is an upper bound per record (prompt tokens, and ``max_tokens`` completion tokens for backends
that declare it), so spend stays within the limit except for the re-asks a teacher makes inside one request
(repairs of malformed answers, retries of transient errors), which the estimate cannot see.

A reservation is released when its sub-batch is saved; the chunk's reservations are zeroed when its lease
ends (done, failed, lost, expired), so a dead worker's reservation lasts at most one lease.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from workers.batches import BatchSpec, budget_reason

# Until this batch has drafts to average over: a prompt of this many tokens per record.
DEFAULT_PROMPT_TOKENS = 500
SAFETY = 1.5  # averages of drafts so far are scaled by this when used as an estimate


class Budget:
    def __init__(self, wiring: Any, batch: BatchSpec, chunk_id: int, owner: str, sub_batch_size: int,
                 max_completion_tokens: int | None):
        self.wiring, self.batch, self.chunk_id, self.owner = wiring, batch, chunk_id, owner
        self.size, self.max_completion = sub_batch_size, max_completion_tokens
        self.price = wiring.settings.prices.get(batch.model)
        self.held: deque[tuple[float, int]] = deque()

    @property
    def active(self) -> bool:
        return self.batch.max_cost_usd is not None or self.batch.max_tokens is not None

    def estimate(self, uow: Any) -> tuple[float, int]:
        """(USD, tokens) that one sub-batch may cost at most."""
        avg_prompt, avg_completion = uow.batch_stats.average_tokens(self.batch.id)
        prompt = int(avg_prompt * SAFETY) if avg_prompt else DEFAULT_PROMPT_TOKENS
        completion = self.max_completion or (int(avg_completion * SAFETY) if avg_completion else 1024)
        usd = (prompt * self.price[0] + completion * self.price[1]) / 1e6 if self.price else 0.0
        return usd * self.size, (prompt + completion) * self.size

    def reserve(self) -> str | None:
        """Reserve the next sub-batch; the reason the budget refuses it, or None."""
        if not self.active:
            return None
        with self.wiring.uow() as uow:
            uow.batches.lock(self.batch.id)  # one reservation at a time per batch
            tokens, cost = uow.batch_stats.spend(self.batch.id)
            held_usd, held_tokens = uow.chunks.reserved(self.batch.id)
            reason = budget_reason(self.batch.max_cost_usd, self.batch.max_tokens, tokens, cost)
            if reason:
                return reason
            usd, est_tokens = self.estimate(uow)
            over = _over(self.batch, cost + held_usd + usd, tokens + held_tokens + est_tokens)
            if over:
                return (f"budget reached: {over} with ${cost:.4f} / {tokens:,} tokens spent, "
                        f"${held_usd:.4f} / {held_tokens:,} in flight and the next sub-batch estimated at "
                        f"${usd:.4f} / {est_tokens:,}")
            if not uow.chunks.reserve(self.chunk_id, self.owner, usd, est_tokens):
                return None  # lease lost: the fence stops the chunk
            uow.commit()
        self.held.append((usd, est_tokens))
        return None

    def release_one(self) -> None:
        if not self.held:
            return
        usd, tokens = self.held.popleft()
        with self.wiring.uow() as uow:
            uow.chunks.reserve(self.chunk_id, self.owner, -usd, -tokens)
            uow.commit()


def _over(batch: BatchSpec, cost: float, tokens: int) -> str | None:
    if batch.max_cost_usd is not None and cost > batch.max_cost_usd:
        return f"max ${batch.max_cost_usd:.4f} would be passed"
    if batch.max_tokens is not None and tokens > batch.max_tokens:
        return f"max {batch.max_tokens:,} tokens would be passed"
    return None

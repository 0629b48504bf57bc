"""Without a broker: the same chunk code, run here one chunk after another."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from generation.run import RunStats
from reasongen.bootstrap import Wiring
from workers import dispatch, sweeper
from workers.batches import utcnow
from workers.chunks import BackendSource, Outcome, process_chunk


@dataclass
class Totals:
    """Progress of a whole batch: finished chunks plus the chunk in hand."""

    done: int = 0
    failed: int = 0
    tokens: int = 0
    cost_usd: float = 0.0

    def plus(self, stats: RunStats | None) -> "Totals":
        if stats is None:
            return self
        return Totals(self.done + stats.done + stats.skipped, self.failed + stats.failed,
                      self.tokens + stats.prompt_tokens + stats.completion_tokens, self.cost_usd + stats.cost_usd)


def run_here(wiring: Wiring, batch_id: int, on_progress: Callable[[Totals], None] | None = None) -> list[Outcome]:
    """Run every open chunk of a batch in this process (expired leases included); follow-ups too."""
    sweeper.sweep(wiring, batch_id=batch_id, force=True, send=False)
    with wiring.uow() as uow:
        chunk_ids = [c.id for c in uow.chunks.for_batch(batch_id, ["queued"])]
    backends, totals, outcomes = BackendSource(wiring.settings), Totals(), []
    for chunk_id in chunk_ids:
        report = (lambda s, base=totals: on_progress(base.plus(s))) if on_progress else None
        outcome = process_chunk(wiring, chunk_id, backends, on_progress=report)
        while outcome.state == "retry":
            outcome = process_chunk(wiring, chunk_id, backends, on_progress=report)
        totals = totals.plus(outcome.stats)
        outcomes.append(outcome)
        if outcome.followup:
            _followup(wiring, *outcome.followup)
    return outcomes


class FollowupError(RuntimeError):
    pass


def _followup(wiring: Wiring, batch_id: int, then: str) -> None:
    with wiring.uow() as uow:  # handed out here and now: nothing for a sweeper to re-send
        uow.followups.mark_sent(batch_id, utcnow())
        uow.commit()
    try:
        dispatch.run_followup_here(wiring, batch_id, then)
    except (LookupError, ValueError) as exc:
        raise FollowupError(f"batch {batch_id} finished, but its follow-up '{then}' failed: {exc}") from exc

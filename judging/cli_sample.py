"""`review next --sample N [--stratify lang,field]`: the spot-check session (kept out of cli/review.py)."""

from __future__ import annotations

from typing import Any

from cli.context import console, wiring
from review.filters import parse_filter
from review.sampling import sample_ids, sample_loop


def spot_check(ctx: Any, term: Any, n: int, stratify: str | None, seed: int, where: str | None,
               reviewer: str) -> None:
    flt = parse_filter(where)
    strata = [s.strip() for s in (stratify or "").split(",") if s.strip()]
    with wiring(ctx) as wired:
        with wired.uow() as uow:
            dataset_id = uow.records.dataset(flt.dataset).id if flt.dataset else None
            ids = sample_ids(uow, n, stratify=strata, seed=seed, dataset_id=dataset_id)
        if not ids:
            console.print("No drafts decided by a policy yet; nothing to spot-check.")
            return
        done = sample_loop(wired.uow, ids, reviewer, term)
    console.print("spot check: " + (", ".join(f"{k} {v}" for k, v in sorted(done.items())) or "no decisions")
                  + " · see how far to trust the policy: reasongen review agreement", highlight=False)

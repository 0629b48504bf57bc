"""What runs when a generation batch completes with `--then build|train`.

Exactly once, however it is delivered: the follow-up is claimed on the batch row (a conditional UPDATE and a
lease that a heartbeat renews while it runs), so a second delivery at the same time finds it taken and does
nothing; the schema allows one build and one run per batch, and the run is claimed again before it trains.
A follow-up that cannot run fails visibly: its state and error stay on the batch (`status` shows them) and
`reasongen retry-followup BATCH` runs it again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from reasongen.bootstrap import Wiring
from storage.models import FOLLOWUPS, Batch, Dataset
from training.build import BuildOptions, build_sft
from training.config import TrainConfig
from training.train import create_run, execute_run

log = logging.getLogger(__name__)


@dataclass
class FollowupResult:
    build_id: int
    run_id: int | None = None


class FollowupTaken(RuntimeError):
    """Another delivery of the same follow-up is running it (or it already ran)."""


class NothingToBuild(ValueError):
    pass


def _now() -> datetime:
    return datetime.now(timezone.utc)


def run_followup(wiring: Wiring, batch_id: int, then: str, owner: str | None = None) -> FollowupResult:
    """Run a batch's follow-up once. Raises FollowupTaken when another delivery has it or it is done."""
    from workers.chunks import is_db_outage, new_owner
    from workers.heartbeat import Heartbeat

    if then not in FOLLOWUPS:
        raise ValueError(f"Unknown follow-up {then!r}; use one of: {', '.join(FOLLOWUPS)}")
    owner = owner or new_owner()
    lease_s = wiring.settings.lease_s
    with wiring.uow() as uow:
        if not uow.followups.claim(batch_id, owner, _now(), _now() + timedelta(seconds=lease_s)):
            uow.batches.get(batch_id)  # a missing batch says so
            raise FollowupTaken(f"batch {batch_id}: follow-up already taken or done; nothing to do")
        uow.commit()

    def renew() -> bool:
        with wiring.uow() as uow:
            ok = uow.followups.touch(batch_id, owner, _now() + timedelta(seconds=lease_s))
            uow.commit()
        return ok

    try:
        with Heartbeat(renew, lease_s / 3, name=f"followup-{batch_id}"):
            result = _run(wiring, batch_id, then, owner)
    except Exception as exc:
        if not is_db_outage(exc):  # an outage keeps the claim: the retried task takes it back (same owner)
            _finish(wiring, batch_id, owner, f"{type(exc).__name__}: {exc}"[:2000])
        raise
    _finish(wiring, batch_id, owner, None)
    return result


def _run(wiring: Wiring, batch_id: int, then: str, owner: str) -> FollowupResult:
    from workers.dispatch import followup_blocker

    with wiring.uow() as uow:
        blocker = followup_blocker(uow, batch_id)
    if blocker:
        raise NothingToBuild(blocker)
    build_id = _build_for(wiring, batch_id)
    if then == "build":
        return FollowupResult(build_id)
    return FollowupResult(build_id, _train_for(wiring, batch_id, build_id, owner))


def _finish(wiring: Wiring, batch_id: int, owner: str, error: str | None) -> None:
    with wiring.uow() as uow:
        uow.followups.finish(batch_id, owner, error)
        uow.commit()


def _build_for(wiring: Wiring, batch_id: int) -> int:
    with wiring.uow() as uow:
        batch = uow.session.get(Batch, batch_id)
        if batch is None:
            raise LookupError(f"No batch with id {batch_id}")
        found = uow.session.get(Dataset, batch.dataset_id)
        assert found is not None  # batches.dataset_id is a foreign key
        dataset = found.name
        existing = uow.builds.for_batch(batch_id)
        if existing is not None:
            return existing.id
    return build_sft(wiring.uow, BuildOptions(dataset, batch_id=batch_id)).build_id


def _train_for(wiring: Wiring, batch_id: int, build_id: int, owner: str) -> int:
    with wiring.uow() as uow:
        run = uow.runs.for_batch(batch_id)
        run_id = run.id if run else None
        done_id = run.id if run and run.status == "completed" else None
        # Training options the batch carries (the demo's short run); anything else takes the defaults.
        overrides = dict((uow.batches.get(batch_id).params or {}).get("train_config") or {})
    if done_id is not None:
        return done_id
    if run_id is None:
        # The local model setting (Phi-2 by default) is also the model a follow-up fine-tunes.
        config = TrainConfig(**{"base_model": wiring.settings.local_model, **overrides})
        run_id = create_run(wiring.uow, build_id, config, batch_id=batch_id)
    # The follow-up's owner trains the run: a trainer that dies leaves both leases to the sweeper at once.
    # RunTaken (someone else trains this run, e.g. `reasongen train`) fails the follow-up, visibly.
    execute_run(wiring.uow, run_id, lease_s=wiring.settings.lease_s, owner=owner)
    return run_id

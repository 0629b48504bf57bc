"""What runs when a generation batch completes with `--then build|train`.

The queue stage calls run_followup once per batch; it is also safe to call again (a redelivered task):
a batch's build and run are found by batch id and reused, and a completed run is not trained twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from reasongen.bootstrap import Wiring
from storage.models import Batch, Dataset
from training.build import BuildOptions, build_sft
from training.config import TrainConfig
from training.train import create_run, execute_run

FOLLOWUPS = ("build", "train")


@dataclass
class FollowupResult:
    build_id: int
    run_id: int | None = None


def run_followup(wiring: Wiring, batch_id: int, then: str) -> FollowupResult:
    if then not in FOLLOWUPS:
        raise ValueError(f"Unknown follow-up {then!r}; use one of: {', '.join(FOLLOWUPS)}")
    build_id = _build_for(wiring, batch_id)
    if then == "build":
        return FollowupResult(build_id)
    return FollowupResult(build_id, _train_for(wiring, batch_id, build_id))


def _build_for(wiring: Wiring, batch_id: int) -> int:
    with wiring.uow() as uow:
        batch = uow.session.get(Batch, batch_id)
        if batch is None:
            raise LookupError(f"No batch with id {batch_id}")
        dataset = uow.session.get(Dataset, batch.dataset_id).name  # type: ignore[union-attr]
        existing = uow.builds.for_batch(batch_id)
        if existing is not None:
            return existing.id
    return build_sft(wiring.uow, BuildOptions(dataset, batch_id=batch_id)).build_id


def _train_for(wiring: Wiring, batch_id: int, build_id: int) -> int:
    with wiring.uow() as uow:
        run = uow.runs.for_batch(batch_id)
        run_id, done = (run.id, run.status == "completed") if run else (None, False)
    if done:
        return run_id  # type: ignore[return-value]
    if run_id is None:
        # The local model setting (Phi-2 by default) is also the model a follow-up fine-tunes.
        config = TrainConfig(base_model=wiring.settings.local_model)
        run_id = create_run(wiring.uow, build_id, config, batch_id=batch_id)
    execute_run(wiring.uow, run_id)
    return run_id

"""Training runs: create one (a row with its full config), execute it (resuming from its last checkpoint).

A worker on the `train` queue calls execute_run with the run id; without a broker the CLI calls it here.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import reasongen
from storage.uow import UnitOfWork
from training import sft
from training.callbacks import DbMetricsCallback, ThroughputCallback
from training.config import TrainConfig

if TYPE_CHECKING:
    from transformers import TrainerCallback

RUN_INFO = "reasongen_run.json"
DEFAULT_LEASE_S = 300.0


class RunTaken(LookupError):
    """Another process holds this run's lease (it is training it now): a second delivery does nothing."""


@dataclass
class RunOutcome:
    run_id: int
    global_step: int
    resumed_from_step: int
    tokens_per_s: float | None
    final_train_loss: float | None
    final_eval_loss: float | None
    output_dir: Path


def default_run_dir(run_id: int) -> Path:
    return Path.cwd() / "runs" / f"run-{run_id}"


def create_run(uow_factory: Callable[[], UnitOfWork], build_id: int, config: TrainConfig,
               batch_id: int | None = None) -> int:
    with uow_factory() as uow:
        uow.builds.get(build_id)
        run = uow.runs.add(build_id, config.base_model, config.to_dict(), batch_id=batch_id)
        run.output_dir = str(Path(config.output_dir or default_run_dir(run.id)).resolve())
        uow.commit()
        return run.id


def execute_run(uow_factory: Callable[[], UnitOfWork], run_id: int,
                callbacks: list[TrainerCallback] | None = None, *,
                lease_s: float = DEFAULT_LEASE_S, owner: str | None = None) -> RunOutcome:
    """Train (or resume) one run. A failure is recorded on the run and re-raised.

    A completed run is not trained again (a redelivered task), it just reports what it has. The run is claimed
    first (a conditional UPDATE with a lease that a heartbeat renews while it trains), so of two deliveries at
    the same time one trains and the other raises RunTaken; a run whose trainer died is taken over once its
    lease runs out."""
    from workers.heartbeat import Heartbeat

    owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    with uow_factory() as uow:
        run = uow.runs.get(run_id)
        if run.status == "completed":
            step = max((m.step for m in uow.runs.metrics(run_id, "train")), default=0)
            return RunOutcome(run_id, step, step, run.tokens_per_s, run.final_train_loss, run.final_eval_loss,
                              Path(run.output_dir))
        dead = run.lease_owner if _dead_here(run.lease_owner) else None  # a crashed trainer on this machine
        if not uow.runs.claim(run_id, owner, _now(), _now() + timedelta(seconds=lease_s), dead):
            raise RunTaken(f"run {run_id} is being trained by another worker ({run.lease_owner}); nothing to do")
        build = uow.builds.get(run.build_id)
        cfg, output_dir = TrainConfig.from_dict(run.config), Path(run.output_dir)
        build_dir, build_info = Path(build.out_dir), {"build_id": build.id, "manifest_sha256": build.manifest_sha256}
        uow.commit()

    def renew() -> bool:
        with uow_factory() as uow:
            ok = uow.runs.touch(run_id, owner, _now() + timedelta(seconds=lease_s))
            uow.commit()
        return ok

    try:
        with Heartbeat(renew, lease_s / 3, name=f"run-{run_id}-lease"):
            outcome = _train(uow_factory, run_id, cfg, build_dir, output_dir, build_info, callbacks or [])
    except Exception as exc:
        _finish(uow_factory, run_id, owner, error=f"{type(exc).__name__}: {exc}")
        raise
    _finish(uow_factory, run_id, owner, tokens_per_s=outcome.tokens_per_s,
            final_train_loss=outcome.final_train_loss, final_eval_loss=outcome.final_eval_loss)
    return outcome


def _dead_here(owner: str | None) -> bool:
    """A lease owner (``host[:pid:...]`` or ``name@host:pid:...``) on this machine whose process is gone."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host.rpartition("@")[2] != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _finish(uow_factory: Callable[[], UnitOfWork], run_id: int, owner: str, **values: object) -> None:
    with uow_factory() as uow:
        run = uow.runs.get(run_id)
        if run.lease_owner not in (owner, None):
            return  # the lease ran out and another worker took the run over: its result counts
        uow.runs.mark_finished(run, **values)
        run.lease_owner, run.lease_expires_at = None, None
        uow.commit()


def _train(uow_factory: Callable[[], UnitOfWork], run_id: int, cfg: TrainConfig, build_dir: Path, output_dir: Path,
           build_info: dict[str, Any], extra: list[TrainerCallback]) -> RunOutcome:
    throughput = ThroughputCallback()
    callbacks = [DbMetricsCallback(uow_factory, run_id), throughput, *extra]
    trainer = sft.make_trainer(cfg, build_dir, output_dir, callbacks)
    checkpoint = sft.last_checkpoint(output_dir)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    final_eval = trainer.evaluate()["eval_loss"] if trainer.eval_dataset is not None else None
    trainer.save_model(str(output_dir))
    assert trainer.processing_class is not None  # make_trainer always passes its tokenizer
    trainer.processing_class.save_pretrained(str(output_dir))
    _write_run_info(output_dir, run_id, cfg, build_info)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return RunOutcome(run_id, trainer.state.global_step, throughput.resumed_from_step, throughput.tokens_per_s,
                      losses[-1] if losses else None, final_eval, output_dir)


def _write_run_info(output_dir: Path, run_id: int, cfg: TrainConfig, build_info: dict[str, Any]) -> None:
    info = {"run_id": run_id, "reasongen_version": reasongen.__version__, **build_info, "config": cfg.to_dict()}
    (output_dir / RUN_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")

"""Training runs, their loss curves (run_metrics) and their side-by-side eval samples."""

from __future__ import annotations

import builtins  # annotations inside the class: its list() method shadows the builtin
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from storage.models import EvalSample, Run, RunMetric, utcnow
from storage.repositories.base import rowcount

UNFINISHED = ("queued", "running", "failed")


class RunNotFoundError(LookupError):
    def __init__(self, run_id: int):
        super().__init__(f"No run with id {run_id}. List runs with: reasongen runs")


class RunRepository:
    def __init__(self, session: Session):
        self.session = session

    def add(self, build_id: int, base_model: str, config: dict[str, Any], batch_id: int | None = None) -> Run:
        run = Run(build_id=build_id, batch_id=batch_id, base_model=base_model, config=config, output_dir="")
        self.session.add(run)
        self.session.flush()
        return run

    def get(self, run_id: int) -> Run:
        found = self.session.get(Run, run_id)
        if found is None:
            raise RunNotFoundError(run_id)
        return found

    def list(self, ids: Sequence[int] | None = None) -> Sequence[Run]:
        stmt = select(Run).order_by(Run.id)
        if ids is not None:
            stmt = stmt.where(Run.id.in_(list(ids)))
        return self.session.scalars(stmt).all()

    def for_batch(self, batch_id: int) -> Run | None:
        return self.session.scalar(select(Run).where(Run.batch_id == batch_id).order_by(Run.id).limit(1))

    def latest_unfinished(self, build_id: int) -> Run | None:
        stmt = (select(Run).where(Run.build_id == build_id, Run.status.in_(UNFINISHED))
                .order_by(Run.id.desc()).limit(1))
        return self.session.scalar(stmt)

    def claim(self, run_id: int, owner: str, now: Any, until: Any, dead_owner: str | None = None) -> bool:
        """Take a run to train it: not completed, and nobody else holds a live lease on it. One UPDATE, so of
        two workers receiving the same message at once exactly one wins."""
        free = or_(Run.status.in_(("queued", "failed")), Run.lease_expires_at.is_(None), Run.lease_expires_at < now,
                   Run.lease_owner.in_([owner, dead_owner or owner]))
        stmt = (update(Run).where(Run.id == run_id, Run.status != "completed", free)
                .values(status="running", error=None, lease_owner=owner, lease_expires_at=until,
                        started_at=func.coalesce(Run.started_at, now))
                .execution_options(synchronize_session=False))  # SQLite's naive datetimes vs. aware ones
        return rowcount(self.session.execute(stmt)) == 1

    def touch(self, run_id: int, owner: str, until: Any) -> bool:
        stmt = (update(Run).where(Run.id == run_id, Run.lease_owner == owner, Run.status == "running")
                .values(lease_expires_at=until).execution_options(synchronize_session=False))
        return rowcount(self.session.execute(stmt)) == 1

    def owners(self) -> builtins.list[tuple[int, str]]:
        stmt = select(Run.id, Run.lease_owner).where(Run.status == "running", Run.lease_owner.is_not(None))
        return [(int(i), str(o)) for i, o in self.session.execute(stmt)]

    def expire_lease(self, run_id: int, owner: str, now: Any) -> bool:
        stmt = (update(Run).where(Run.id == run_id, Run.lease_owner == owner, Run.status == "running")
                .values(lease_expires_at=now).execution_options(synchronize_session=False))
        return rowcount(self.session.execute(stmt)) == 1

    def expired(self, now: Any) -> builtins.list[int]:
        """Runs whose trainer stopped renewing the lease (killed mid-training)."""
        stmt = select(Run.id).where(Run.status == "running", and_(Run.lease_expires_at.is_not(None),
                                                                  Run.lease_expires_at < now))
        return list(self.session.scalars(stmt))

    def mark_running(self, run: Run) -> None:
        run.status, run.error = "running", None
        run.started_at = run.started_at or utcnow()

    def mark_finished(self, run: Run, **values: Any) -> None:
        """completed (with tokens_per_s and final losses) or failed (with error)."""
        for name, value in values.items():
            setattr(run, name, value)
        run.status = "failed" if values.get("error") else "completed"
        run.finished_at = utcnow()

    def add_metric(self, run_id: int, split: str, step: int, loss: float,
                   epoch: float | None = None, learning_rate: float | None = None) -> None:
        """Upsert: a resumed run logs again the steps between its checkpoint and the crash."""
        insert = pg_insert if self.session.get_bind().dialect.name == "postgresql" else sqlite_insert
        values = dict(run_id=run_id, split=split, step=step, loss=loss, epoch=epoch, learning_rate=learning_rate)
        stmt = insert(RunMetric).values(**values).on_conflict_do_update(
            index_elements=["run_id", "split", "step"], set_=dict(loss=loss, epoch=epoch, learning_rate=learning_rate))
        self.session.execute(stmt)

    def metrics(self, run_id: int, split: str | None = None) -> Sequence[RunMetric]:
        stmt = select(RunMetric).where(RunMetric.run_id == run_id).order_by(RunMetric.split, RunMetric.step)
        if split:
            stmt = stmt.where(RunMetric.split == split)
        return self.session.scalars(stmt).all()

    def last_loss(self, run_id: int, split: str) -> float | None:
        stmt = (select(RunMetric.loss).where(RunMetric.run_id == run_id, RunMetric.split == split)
                .order_by(RunMetric.step.desc()).limit(1))
        return self.session.scalar(stmt)

    def replace_eval_samples(self, run_id: int, samples: builtins.list[dict[str, Any]]) -> None:
        self.session.execute(delete(EvalSample).where(EvalSample.run_id == run_id))
        self.session.add_all(EvalSample(run_id=run_id, **s) for s in samples)

    def eval_samples(self, run_id: int) -> Sequence[EvalSample]:
        return self.session.scalars(select(EvalSample).where(EvalSample.run_id == run_id).order_by(EvalSample.id)).all()

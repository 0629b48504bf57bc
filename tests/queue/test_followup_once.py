"""Follow-ups and training runs happen exactly once when the same message reaches two train workers at the
same time (an outbox re-send after a crash, Redis redelivering a long task): issue 10, item 3.

Real `reasongen worker --queues train` processes on Redis and PostgreSQL, a tiny model trained on the CPU.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from storage.models import Batch, Build, Draft, Run
from tests.queue.conftest import wait_for
from tests.queue.test_workers import ready, scalar
from tests.training.conftest import make_rows, tiny_config
from training.build import BuildOptions, build_sft
from training.train import create_run
from workers import dispatch
from workers.app import FOLLOWUP_TASK, queue_name
from workers.batches import utcnow
from workers.inprocess import run_here
from workers.planning import BatchRequest, plan_batch

pytestmark = pytest.mark.slow
# Training on a loaded CPU can starve the heartbeat thread for seconds; the suite's 2 s lease is for chunks.
LONG_LEASE = {"REASONGEN_LEASE_SECONDS": "60"}


@pytest.fixture
def tiny(tmp_path_factory) -> str:  # type: ignore[no-untyped-def]
    from training.tiny import make_tiny_model

    return str(make_tiny_model(tmp_path_factory.mktemp("tiny-phi")))


def _done_batch_awaiting_followup(wired, then: str) -> int:  # type: ignore[no-untyped-def]
    """A finished batch with approved drafts whose follow-up was decided: as finalize leaves it."""
    from tests.helpers import add_records

    with wired.uow() as uow:
        add_records(uow, "ds", make_rows(6))
    planned = plan_batch(wired, BatchRequest(dataset="ds", backend="fake"))
    lease, wired.settings.lease_s = wired.settings.lease_s, 60.0  # a loaded CPU must not cost this run its lease
    try:
        outcomes = run_here(wired, planned.batch_id)
    finally:
        wired.settings.lease_s = lease
    assert [o.state for o in outcomes] == ["done"], outcomes
    with wired.uow() as uow:
        uow.session.execute(update(Draft).values(status="approved"))
        uow.session.execute(update(Batch).where(Batch.id == planned.batch_id).values(
            then=then, followup_status="pending", followup_enqueued_at=utcnow(), followup_sent_at=utcnow()))
        uow.commit()
        drafts = uow.batch_stats.current_drafts(uow.chunks.record_ids(planned.batch_id), "reason", "fake-teacher")
        assert {d.status for d in drafts.values()} == {"approved"} and len(drafts) == 6, drafts
    return planned.batch_id


def _send_twice_at_once(settings, name: str, args: list) -> None:  # type: ignore[no-untyped-def]
    app = dispatch.app_for(settings)
    with app.producer_or_acquire() as producer:
        for _ in range(2):
            app.send_task(name, args=args, queue=queue_name(settings, "train"), producer=producer,
                          ignore_result=True)


def _count(wired, table, batch_id: int) -> int:  # type: ignore[no-untyped-def]
    return int(scalar(wired, select(func.count()).select_from(table).where(table.batch_id == batch_id)) or 0)


def test_a_followup_delivered_twice_at_once_builds_and_trains_once(queue_wired, start_worker, tiny, tmp_path):
    env = dict(LONG_LEASE, REASONGEN_LOCAL_MODEL=tiny)
    a, b = start_worker(queues="train", env=env), start_worker(queues="train", env=env)
    ready(queue_wired, a, b)
    batch_id = _done_batch_awaiting_followup(queue_wired, "train")
    _send_twice_at_once(queue_wired.settings, FOLLOWUP_TASK, [batch_id, "train"])
    state = wait_for(lambda: scalar(queue_wired, select(Batch.followup_status).where(
        Batch.id == batch_id, Batch.followup_status.in_(("done", "failed")))), 240, every=0.5, what="follow-up")
    logs = a.log_path.read_text() + b.log_path.read_text()
    assert state == "done", logs[-3000:]
    assert "is being trained by another worker" not in logs, logs[-3000:]
    assert (_count(queue_wired, Build, batch_id), _count(queue_wired, Run, batch_id)) == (1, 1)
    assert scalar(queue_wired, select(Run.status).where(Run.batch_id == batch_id)) == "completed"
    assert "already taken or done" in logs  # the second delivery found it taken and did nothing


def test_a_run_delivered_to_two_train_workers_at_once_trains_once(queue_wired, start_worker, tiny, tmp_path):
    a, b = start_worker(queues="train", env=LONG_LEASE), start_worker(queues="train", env=LONG_LEASE)
    ready(queue_wired, a, b)
    batch_id = _done_batch_awaiting_followup(queue_wired, "build")
    build = build_sft(queue_wired.uow, BuildOptions("ds", out_dir=str(tmp_path / "build"), eval_fraction=0.3))
    run_id = create_run(queue_wired.uow, build.build_id, tiny_config(tiny, tmp_path, max_steps=6, save_steps=2))
    _send_twice_at_once(queue_wired.settings, "reasongen.train_run", [run_id])
    wait_for(lambda: scalar(queue_wired, select(Run.status).where(Run.id == run_id, Run.status == "completed")),
             240, every=0.5, what="run completed")
    logs = a.log_path.read_text() + b.log_path.read_text()
    assert logs.count(f"run {run_id} is being trained by another worker") == 1, logs[-3000:]
    with queue_wired.uow() as uow:
        run = uow.runs.get(run_id)
        assert run.lease_owner is None and run.error is None
        assert run.finished_at - run.started_at < timedelta(minutes=10)
    del batch_id

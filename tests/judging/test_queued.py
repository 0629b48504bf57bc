"""The gate on the queue: real PostgreSQL, Redis and `reasongen worker` processes. A judged, policy-decided
batch holds its follow-up while a draft is pending; once a person decides it, the train worker builds once."""

from __future__ import annotations

from sqlalchemy import func, select

from judging import gate
from judging.plan import JudgeRequest, judge_params, plan_judge_batch
from review import service
from storage.models import Build, Draft, Judgement
from tests.judging.conftest import make_policy, seed
from tests.queue.conftest import broker_url, queue_settings, queue_wired, start_worker, wait_for  # noqa: F401
from workers import dispatch, monitor
from workers.planning import BatchRequest, plan_batch


def _batch(wired, batch_id):
    with wired.uow() as uow:
        b = uow.batches.get(batch_id)
        return b.status, b.followup_waiting_at, b.followup_enqueued_at


def test_queued_judge_policy_and_held_followup(queue_wired, start_worker, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seed(queue_wired, scores=(5, 1, 3, 4))
    make_policy(queue_wired)
    start_worker("teacher", concurrency=2)
    start_worker("train")
    req = BatchRequest(dataset="ds", backend="fake", chunk_size=1, then="build",
                       extra_params=judge_params(queue_wired, "fake", policy="strict"))
    planned = plan_batch(queue_wired, req)
    dispatch.send_chunks(queue_wired.settings, planned.chunk_ids, planned.backend)
    wait_for(lambda: _batch(queue_wired, planned.batch_id)[0] == "done", 60, what="batch done")
    status, waiting, enqueued = _batch(queue_wired, planned.batch_id)
    assert waiting is not None and enqueued is None
    assert monitor.batch_summary(queue_wired, planned.batch_id)["waiting_for_review"] == 1
    with queue_wired.uow() as uow:
        assert uow.session.scalar(select(func.count()).select_from(Judgement)) == 4
        pending = uow.session.execute(select(Draft.id, Draft.version).where(Draft.status == "pending")).one()
        assert uow.session.scalar(select(func.count()).select_from(Build)) == 0
    with queue_wired.uow() as uow:
        service.approve(uow, pending.id, pending.version, "alice")
        uow.commit()
    assert gate.release_ready(queue_wired) == [(planned.batch_id, "build")]

    def built():
        with queue_wired.uow() as uow:
            return uow.session.execute(select(Build.n_train, Build.n_eval).where(
                Build.batch_id == planned.batch_id)).all()

    rows = wait_for(built, 60, what="the follow-up build")
    assert len(rows) == 1 and rows[0].n_train + rows[0].n_eval == 3  # 5, 3 (by alice) and 4; not the rejected 1
    assert gate.release_ready(queue_wired) == [] and gate.release(queue_wired, planned.batch_id) is None

    # A judge batch over existing drafts on the same workers: already judged, so nothing is judged again.
    judge_batch = plan_judge_batch(queue_wired, JudgeRequest(dataset="ds", backend="fake", where="status=approved",
                                                             chunk_size=2))
    dispatch.send_chunks(queue_wired.settings, judge_batch.chunk_ids, judge_batch.backend)
    wait_for(lambda: _batch(queue_wired, judge_batch.batch_id)[0] == "done", 60, what="judge batch done")
    with queue_wired.uow() as uow:
        assert uow.session.scalar(select(func.count()).select_from(Judgement)) == 4
    summary = monitor.batch_summary(queue_wired, judge_batch.batch_id)
    assert summary["kind"] == "judge" and summary["done"] == 3

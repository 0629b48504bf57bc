"""`generate --then build|train`: the follow-up builds and trains once per batch."""

import pytest
from sqlalchemy import func, select

from reasongen.bootstrap import bootstrap
from storage.models import Batch, Build, Run
from tests.training.conftest import approve_all, make_rows
from training.pipeline import FollowupTaken, run_followup


def _batch(wired, dataset: str, then: str) -> int:
    with wired.uow() as uow:
        ds = uow.records.dataset(dataset)
        batch = Batch(dataset_id=ds.id, backend="fake", model="fake-teacher", template_name="default",
                      chunk_size=10, then=then, status="completed")
        uow.session.add(batch)
        uow.commit()
        return batch.id


def _count(wired, table) -> int:
    with wired.uow() as uow:
        return uow.session.scalar(select(func.count()).select_from(table))


@pytest.mark.slow
def test_followup_trains_once_per_batch(sqlite_wired, tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    wired = bootstrap(sqlite_wired.settings.model_copy(update={"local_model": tiny_model}))
    approve_all(wired, "ds", make_rows(9))
    batch_id = _batch(wired, "ds", "train")
    first = run_followup(wired, batch_id, "train")
    with wired.uow() as uow:
        run = uow.runs.get(first.run_id)
        finished = run.finished_at
        assert run.status == "completed" and run.batch_id == batch_id and run.base_model == tiny_model
        assert uow.builds.get(first.build_id).batch_id == batch_id
    assert (tmp_path / "builds/ds" / f"build-{first.build_id}" / "manifest.json").is_file()
    assert (tmp_path / "runs" / f"run-{first.run_id}" / "adapter_model.safetensors").is_file()
    with pytest.raises(FollowupTaken):  # a redelivered task finds it done and does nothing
        run_followup(wired, batch_id, "train")
    assert (_count(wired, Build), _count(wired, Run)) == (1, 1)
    with wired.uow() as uow:
        assert uow.runs.get(first.run_id).finished_at == finished
    wired.close()


def test_followup_build_only_and_bad_input(sqlite_wired, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    approve_all(sqlite_wired, "ds", make_rows(3))
    batch_id = _batch(sqlite_wired, "ds", "build")
    result = run_followup(sqlite_wired, batch_id, "build")
    assert result.run_id is None
    with pytest.raises(FollowupTaken):
        run_followup(sqlite_wired, batch_id, "build")
    assert (_count(sqlite_wired, Build), _count(sqlite_wired, Run)) == (1, 0)
    with pytest.raises(ValueError, match="Unknown follow-up"):
        run_followup(sqlite_wired, batch_id, "deploy")
    with pytest.raises(LookupError, match="No batch 999"):
        run_followup(sqlite_wired, 999, "build")

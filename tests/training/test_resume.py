"""A run killed mid-training resumes from its last checkpoint and its global step continues."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import update

from storage.models import Run
from tests.training.conftest import tiny_config
from training.sft import last_checkpoint
from training.train import create_run, execute_run

REPO = Path(__file__).resolve().parents[2]
CHILD = "import sys; from reasongen.bootstrap import bootstrap; from reasongen.settings import Settings; " \
        "from training.train import execute_run; " \
        "execute_run(bootstrap(Settings(database_url=sys.argv[1])).uow, int(sys.argv[2]))"


def _wait_for_checkpoint(folder: Path, child: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while last_checkpoint(folder) is None:
        assert child.poll() is None, "the training process ended before writing a checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within the time limit"
        time.sleep(0.1)  # polling a folder another process writes: no event to await


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_checkpoint(sqlite_wired, sqlite_url, repeated_build, tiny_model, tmp_path):
    cfg = tiny_config(tiny_model, tmp_path, max_steps=2000, save_steps=4, logging_steps=2)
    run_id = create_run(sqlite_wired.uow, repeated_build.build_id, cfg)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, sqlite_url, str(run_id)], env=env, cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_checkpoint(tmp_path / "run", child)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    checkpoint = int(last_checkpoint(tmp_path / "run").name.split("-")[1])
    with sqlite_wired.uow() as uow:  # the crash left it "running"; stop it a few steps later to keep this fast
        assert uow.runs.get(run_id).status == "running"
        assert uow.runs.latest_unfinished(repeated_build.build_id).id == run_id
        uow.session.execute(update(Run).where(Run.id == run_id)
                            .values(config={**cfg.to_dict(), "max_steps": checkpoint + 4}))
        uow.commit()
    outcome = execute_run(sqlite_wired.uow, run_id)
    assert outcome.resumed_from_step == checkpoint >= 4
    assert outcome.global_step == checkpoint + 4
    with sqlite_wired.uow() as uow:
        assert uow.runs.get(run_id).status == "completed"
        steps = [m.step for m in uow.runs.metrics(run_id, "train")]
    assert steps == list(range(2, checkpoint + 5, 2))  # no gap and no duplicate across the crash

"""With a broker, `reasongen train --wait` queues the run for a real `reasongen worker --queues train`."""

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from reasongen.bootstrap import bootstrap
from reasongen.settings import Settings
from tests.services import REDIS_URL
from tests.training.conftest import approve_all, make_rows
from training.build import BuildOptions, build_sft

ROOT = Path(__file__).resolve().parents[2]
REASONGEN = str(Path(sys.executable).with_name("reasongen"))
REDIS_DB = 13  # our own Redis db number: nothing here touches other suites' keys


def _drop_keys(broker: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(broker)
    for key in client.scan_iter(match=f"*{prefix}*"):
        client.delete(key)


@pytest.mark.slow
def test_train_on_a_train_worker_and_wait(pg_url, redis_url, tiny_model, tmp_path):
    broker = REDIS_URL.rsplit("/", 1)[0] + f"/{REDIS_DB}"
    env = dict(os.environ, PYTHONPATH=str(ROOT), REASONGEN_DATABASE_URL=pg_url, REASONGEN_BROKER_URL=broker,
               REASONGEN_QUEUE_PREFIX=f"tt{uuid.uuid4().hex[:8]}-")
    wired = bootstrap(Settings(database_url=pg_url))
    approve_all(wired, "ds", make_rows(6))
    build = build_sft(wired.uow, BuildOptions("ds", out_dir=str(tmp_path / "build"), eval_fraction=0.3))
    with open(tmp_path / "worker.log", "w") as log:
        worker = subprocess.Popen([REASONGEN, "worker", "--queues", "train", "--hostname", "train-test@%h",
                                   "--loglevel", "WARNING"], env=env, cwd=tmp_path, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        done = subprocess.run([REASONGEN, "train", "--build", str(build.build_id), "--base-model", tiny_model,
                               "--max-steps", "4", "--logging-steps", "2", "--batch-size", "4", "--wait", "--json"],
                              env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
        _drop_keys(broker, env["REASONGEN_QUEUE_PREFIX"])
    assert done.returncode == 0, done.stderr[-2000:] + (tmp_path / "worker.log").read_text()[-2000:]
    run = json.loads(done.stdout)
    assert run["status"] == "completed" and run["step"] == 4, run
    with wired.uow() as uow:
        assert [m.step for m in uow.runs.metrics(run["id"], "train")] == [2, 4]
    assert (Path(run["output_dir"]) / "adapter_model.safetensors").is_file()
    wired.close()

"""The one error layer, through the real `reasongen` console script against real unreachable services:
one `error:` line with the fix, the documented exit code (README "Exit codes"), a traceback only with --debug."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from reasongen.errors import ExitCode
from tests.services import PG_ADMIN_URL, pg_connect, unavailable

REASONGEN = str(Path(sys.executable).with_name("reasongen"))


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        python_prelude: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The installed CLI in a fresh process (or `python -c PRELUDE; app()` to simulate a missing module)."""
    full_env = {**os.environ, "COLUMNS": "100", **(env or {})}
    full_env.pop("REASONGEN_DEBUG", None) if "REASONGEN_DEBUG" not in (env or {}) else None
    if python_prelude is None:
        cmd = [REASONGEN, *args]
    else:
        cmd = [sys.executable, "-c", f"{python_prelude}\nfrom cli.main import app\napp(prog_name='reasongen')", *args]
    return subprocess.run(cmd, env=full_env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def assert_one_error_line(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def assert_traceback_with_debug(args: list[str], env: dict[str, str], code: int, **kw: object) -> None:
    for debug_args, debug_env in (["--debug"], {}), ([], {"REASONGEN_DEBUG": "1"}):
        result = run(*debug_args, *args, env={**env, **debug_env}, **kw)  # type: ignore[arg-type]
        assert result.returncode == code, result.stderr
        assert "Traceback (most recent call last)" in result.stderr
        assert result.stderr.rstrip().splitlines()[-1].startswith("error: ")


# -- the database --------------------------------------------------------------------------------------------

def test_a_postgresql_server_that_is_not_running(tmp_path):
    env = {"REASONGEN_DATABASE_URL": f"postgresql://postgres:s3cret@127.0.0.1:{closed_port()}/reasongen"}
    for command in (["datasets"], ["review", "list"], ["status"], ["db", "upgrade"]):
        line = assert_one_error_line(run(*command, env=env, cwd=tmp_path), ExitCode.DATABASE,
                                     "Connection refused", "REASONGEN_DATABASE_URL")
        assert "s3cret" not in line  # the password is never shown
    assert_traceback_with_debug(["datasets"], env, ExitCode.DATABASE, cwd=tmp_path)


def test_a_missing_postgresql_database(tmp_path):
    try:
        pg_connect().close()
    except Exception as exc:  # noqa: BLE001
        unavailable("PostgreSQL", exc)
    name = f"rg_missing_{uuid.uuid4().hex[:8]}"
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    assert_one_error_line(run("datasets", env={"REASONGEN_DATABASE_URL": url}, cwd=tmp_path), ExitCode.DATABASE,
                          f'database "{name}" does not exist', f"createdb {name}", "reasongen db upgrade")


@pytest.mark.parametrize("url", ["foo://bar", "not a url at all"])
def test_an_invalid_database_url(tmp_path, url):
    assert_one_error_line(run("datasets", env={"REASONGEN_DATABASE_URL": url}, cwd=tmp_path), ExitCode.DATABASE,
                          "invalid database URL", "REASONGEN_DATABASE_URL")


def test_a_database_without_the_schema(tmp_path):
    env = {"REASONGEN_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"}
    assert_one_error_line(run("review", "show", "1", env=env, cwd=tmp_path), ExitCode.DATABASE,
                          "has no reasongen schema", "reasongen db upgrade")


# -- Redis ---------------------------------------------------------------------------------------------------

@pytest.fixture
def migrated(tmp_path) -> dict[str, str]:
    env = {"REASONGEN_DATABASE_URL": f"sqlite:///{tmp_path / 'rg.db'}"}
    assert run("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    return env


def test_redis_that_is_down(tmp_path, migrated):
    env = {**migrated, "REASONGEN_BROKER_URL": f"redis://127.0.0.1:{closed_port()}/0"}
    assert_one_error_line(run("workers", env=env, cwd=tmp_path), ExitCode.SERVICE, "cannot reach Redis",
                          "REASONGEN_BROKER_URL")
    # A worker refuses to start at once instead of retrying the connection for minutes.
    assert_one_error_line(run("worker", "--queues", "teacher", env=env, cwd=tmp_path, timeout=60),
                          ExitCode.SERVICE, "cannot reach Redis")
    assert_traceback_with_debug(["workers"], env, ExitCode.SERVICE, cwd=tmp_path)
    status = run("status", env=env, cwd=tmp_path)  # reads the database only: it still works
    assert "Traceback" not in status.stderr
    if status.returncode:
        assert_one_error_line(status, ExitCode.SERVICE, "cannot reach Redis")


# -- a missing extra -----------------------------------------------------------------------------------------

BLOCK = "import sys\nfor name in {names!r}:\n    sys.modules[name] = None  # import fails as if not installed"


def test_a_missing_extra_names_the_extra_and_the_install_command(tmp_path, migrated):
    prelude = BLOCK.format(names=["transformers", "torch", "peft", "trl", "datasets"])
    result = run("eval", "1", env=migrated, cwd=tmp_path, python_prelude=prelude)
    assert_one_error_line(result, ExitCode.MISSING_EXTRA, "eval needs torch, which is not installed", "scripts/install.sh train")
    debug = run("--debug", "eval", "1", env=migrated, cwd=tmp_path, python_prelude=prelude)
    assert debug.returncode == ExitCode.MISSING_EXTRA and "Traceback" in debug.stderr


# -- the same kind of error, the same exit code, whatever the command --------------------------------------

@pytest.mark.parametrize("args", [
    ("show", "no-such-dataset"), ("status", "999"), ("cancel", "999"), ("review", "show", "999"),
    ("review", "approve", "999"), ("review", "history", "999"), ("eval", "show", "999"), ("runs", "plot", "999"),
    ("build-sft", "--dataset", "no-such-dataset"),
])
def test_not_found_is_exit_4_for_every_command(args, tmp_path):
    url = f"sqlite:///{tmp_path / 'rg.db'}"
    runner = CliRunner()
    assert runner.invoke(app, ["--database-url", url, "db", "upgrade"]).exit_code == 0
    result = runner.invoke(app, ["--database-url", url, *args])
    assert result.exit_code == ExitCode.NOT_FOUND, result.output
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_an_unexpected_error_is_one_line_that_asks_for_debug(tmp_path, monkeypatch):
    from storage.repositories.records import RecordRepository

    def broken(self):  # type: ignore[no-untyped-def]
        return None + 1  # a bug

    monkeypatch.setattr(RecordRepository, "overview", broken)
    url = f"sqlite:///{tmp_path / 'rg.db'}"
    runner = CliRunner()
    assert runner.invoke(app, ["--database-url", url, "db", "upgrade"]).exit_code == 0
    result = runner.invoke(app, ["--database-url", url, "datasets"])
    assert result.exit_code == ExitCode.INTERNAL
    assert result.stderr.startswith("error: unexpected TypeError") and "--debug" in result.stderr
    assert "Traceback" not in result.stderr
    debug = runner.invoke(app, ["--debug", "--database-url", url, "datasets"])
    assert debug.exit_code == ExitCode.INTERNAL and "Traceback" in debug.stderr


def test_a_bad_setting_is_bad_input(tmp_path):
    line = assert_one_error_line(run("datasets", env={"REASONGEN_CHUNK_SIZE": "lots"}, cwd=tmp_path),
                                 ExitCode.BAD_INPUT, "invalid setting", "fix the option, the environment variable")
    assert "chunk" in line.lower()
    # A setting that is also a root option is checked by the option parser: a usage error, exit 2 as well.
    usage = run("datasets", env={"REASONGEN_TEACHER_RPM": "lots"}, cwd=tmp_path)
    assert usage.returncode == ExitCode.BAD_INPUT and "Traceback" not in usage.stderr
    assert "REASONGEN_TEACHER_RPM" in usage.stderr or "--teacher-rpm" in usage.stderr


def test_a_reader_that_closes_the_pipe_early_is_not_a_bug(tmp_path):
    """`reasongen judge --help | head -40`: the reader goes away mid-output. That ends the command quietly (click's
    EPIPE handling, status 1) instead of an "unexpected BrokenPipeError ... This is a bug" line (status 70)."""
    script = f'"{REASONGEN}" judge --help | head -40 >/dev/null; echo "status=${{PIPESTATUS[0]}}" >&2'
    for _ in range(6):  # the pipe closes while Rich is still writing, whatever the timing
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                              env=dict(os.environ, COLUMNS="80"))
        assert "error:" not in done.stderr and "status=70" not in done.stderr, done.stderr

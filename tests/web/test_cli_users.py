"""`reasongen users` and `reasongen serve`: accounts from the terminal, and the server answering over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from typer.testing import CliRunner

from cli.main import app
from tests.web.conftest import free_port

runner = CliRunner()
REASONGEN = str(Path(sys.executable).with_name("reasongen"))


def run(url: str, *args: str, stdin: str | None = None):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["--database-url", url, "users", *args], input=stdin)


def test_add_list_disable_and_token(sqlite_url):
    added = run(sqlite_url, "add", "ada", "--role", "admin", "--password-stdin", stdin="long enough pw\n")
    assert added.exit_code == 0, added.output
    assert run(sqlite_url, "add", "bot").exit_code == 0  # no password: tokens only
    listed = json.loads(run(sqlite_url, "list", "--json").stdout)
    assert [(u["name"], u["role"], u["enabled"], u["has_password"]) for u in listed] == [
        ("ada", "admin", True, True), ("bot", "reviewer", True, False)]
    token = run(sqlite_url, "token", "bot").stdout.strip()
    assert token.startswith("rg_") and len(token) > 30
    assert run(sqlite_url, "disable", "bot").exit_code == 0
    assert json.loads(run(sqlite_url, "list", "--json").stdout)[1]["enabled"] is False
    table = run(sqlite_url, "list").stdout
    assert "ada" in table and max(len(line) for line in table.splitlines()) <= 80


def test_bad_input_is_one_clear_line(sqlite_url):
    assert run(sqlite_url, "add", "ada", "--role", "boss").exit_code != 0
    short = run(sqlite_url, "add", "ada", "--password-stdin", stdin="short\n")
    assert short.exit_code != 0 and "at least 8" in short.output
    assert run(sqlite_url, "add", "x y").exit_code != 0
    missing = run(sqlite_url, "disable", "nobody")
    assert missing.exit_code != 0 and "no user 'nobody'" in missing.output
    assert "Traceback" not in missing.output


def test_serve_answers_healthz_and_refuses_strangers(pg_url, tmp_path):
    port = free_port()
    env = dict(os.environ, REASONGEN_DATABASE_URL=pg_url)
    proc = subprocess.Popen([REASONGEN, "serve", "--port", str(port)], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "reasongen serve did not start"
                time.sleep(0.2)
        assert health.json() == {"status": "ok"}
        assert httpx.get(f"http://127.0.0.1:{port}/api/drafts").status_code == 401
        assert httpx.get(f"http://127.0.0.1:{port}/metrics").status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=20)

"""After the README's install a user can type `reasongen`; extras are named alike everywhere; the demo's next
steps run as printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REASONGEN = Path(sys.executable).with_name("reasongen")


def put_on_path(home: Path, path: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "HOME": str(home), "PATH": path, **env}
    full.pop("REASONGEN_BIN_DIR", None)
    full.pop("REASONGEN_NO_LINK", None) if "REASONGEN_NO_LINK" not in env else None
    return subprocess.run(["bash", str(ROOT / "scripts/put_on_path.sh"), str(REASONGEN)], env=full,
                          capture_output=True, text=True, timeout=30, check=True)


def test_reasongen_is_linked_where_the_path_finds_it(tmp_path):
    bin_dir = tmp_path / ".local" / "bin"
    path = f"{bin_dir}:{os.environ['PATH']}"
    out = put_on_path(tmp_path, path).stdout
    assert f"Linked {bin_dir}/reasongen" in out and "type reasongen" in out
    typed = subprocess.run(["reasongen", "--version"], env={**os.environ, "PATH": path}, capture_output=True,
                           text=True, timeout=60)
    assert typed.returncode == 0 and typed.stdout.startswith("reasongen ")
    again = put_on_path(tmp_path, path).stdout  # a second install relinks its own link
    assert "Linked" in again


def test_without_local_bin_on_path_it_says_how_to_activate(tmp_path):
    out = put_on_path(tmp_path, os.environ["PATH"]).stdout
    assert f"source {REASONGEN.parent}/activate" in out and "nothing was linked" in out
    assert not (tmp_path / ".local" / "bin" / "reasongen").exists()


def test_someone_elses_reasongen_is_left_alone(tmp_path):
    bin_dir = tmp_path / ".local" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "reasongen").write_text("#!/bin/sh\necho mine\n")
    out = put_on_path(tmp_path, f"{bin_dir}:{os.environ['PATH']}").stdout
    assert "Left" in out and "alone" in out and (bin_dir / "reasongen").read_text().endswith("echo mine\n")


def test_unknown_extras_are_refused_before_anything_is_installed():
    result = subprocess.run(["bash", str(ROOT / "scripts/install.sh"), "bogus"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2 and "use one of: core, local, train, all, test" in result.stderr


def test_extras_are_named_alike_in_the_readme_the_script_and_pyproject():
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    script = (ROOT / "scripts/install.sh").read_text()
    accepted = set(re.search(r"^\s+(local\|[a-z|]+)\)", script, re.M).group(1).split("|"))  # type: ignore[union-attr]
    assert accepted == extras and "core|none) extras=core" in script
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "EXTRAS is one of: `core` (no extras" in readme
    for name in extras:
        assert f"`{name}`" in readme


@pytest.mark.slow
def test_the_demo_next_steps_run_as_printed(tmp_path):
    env = {**os.environ, "COLUMNS": "80", "PATH": f"{REASONGEN.parent}:{os.environ['PATH']}"}
    env.pop("REASONGEN_DATABASE_URL", None)
    demo = subprocess.run(["reasongen", "demo", "--dir", str(tmp_path / "demo"), "--steps", "2"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert demo.returncode == 0, demo.stderr
    lines = demo.stdout.splitlines()
    start = lines.index("Look around:") + 1
    commands = [line.strip() for line in lines[start:] if line.startswith("  ")]
    commands = commands[: next(i for i, c in enumerate(commands) if c.startswith("export OPENAI"))]
    assert commands[0].startswith("export REASONGEN_DATABASE_URL=sqlite:///") and len(commands) >= 3
    for command in commands[1:]:
        ran = subprocess.run(["bash", "-c", f"{commands[0]} && {command}"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
        assert ran.returncode == 0, (command, ran.stderr)
        assert "error:" not in ran.stderr

"""docker-compose.yml: valid where docker compose is installed, and every reasongen command it runs exists."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _reasongen_services():
    for name, svc in COMPOSE["services"].items():
        image = svc.get("image", "")
        if image.startswith("reasongen") and "entrypoint" not in svc and svc.get("command"):
            yield name, svc["command"]


def test_every_service_command_exists_in_the_cli():
    services = dict(_reasongen_services())
    assert {"migrate", "teacher", "sweeper", "gpu", "train"} <= set(services)
    for name, command in services.items():
        words = [w for w in command if not w.startswith("-")][:2]
        result = CliRunner().invoke(app, [*words[:1], "--help"] if words[0] != "db" else [*words, "--help"])
        assert result.exit_code == 0, f"service {name}: reasongen {' '.join(command)} -> {result.output}"


def test_flower_is_never_unauthenticated():
    flower = COMPOSE["services"]["flower"]
    assert any("--basic-auth=${FLOWER_BASIC_AUTH:?" in part for part in flower["command"])


def test_every_setting_is_listed_in_env_example():
    from reasongen.settings import Settings

    listed = {line.split("=")[0] for line in (ROOT / ".env.example").read_text().splitlines() if "=" in line}
    for field in Settings.model_fields.values():
        names = field.validation_alias.choices  # type: ignore[union-attr]
        assert any(n in listed for n in names), f"{names} missing from .env.example"


def _compose_command() -> list[str] | None:
    """`docker compose` (v2) or `docker-compose` (1.29+), whichever is installed; None if neither."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


COMPOSE_CMD = _compose_command()


@pytest.mark.skipif(COMPOSE_CMD is None, reason="no docker compose client is installed here")
def test_docker_compose_config_is_valid_and_refuses_an_open_flower():
    env = {**os.environ, "POSTGRES_PASSWORD": "x", "FLOWER_BASIC_AUTH": "a:b"}
    subprocess.run([*COMPOSE_CMD, "config", "--quiet"], cwd=ROOT, env=env, check=True)
    del env["FLOWER_BASIC_AUTH"]
    refused = subprocess.run([*COMPOSE_CMD, "config", "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "FLOWER_BASIC_AUTH" in refused.stdout + refused.stderr

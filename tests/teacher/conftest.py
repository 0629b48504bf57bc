"""A real `transformers serve` on loopback with tiny models (reasongen/testing/tserve.py), shared by the session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reasongen.testing import tserve


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tserve.make_models(tmp_path_factory.mktemp("tserve-models"))


@pytest.fixture(scope="session")
def tserve_server(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tserve.Server]:
    # A short idle timeout so a model folder repaired on disk is read again (the breaker's resume test).
    server = tserve.start(tmp_path_factory.mktemp("tserve") / "server.log", extra=["--model-timeout", "2"])
    yield server
    server.stop()


@pytest.fixture
def tserve_url(tserve_server: tserve.Server) -> str:
    return tserve_server.base_url


@pytest.fixture(autouse=True)
def _teacher_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REASONGEN_BROKER_URL", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local-not-secret-1234")

"""Fixtures for generation tests: the loopback OpenAI-compatible stub."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from reasongen.testing.openai_server import StubHandle, start_stub_server


@pytest.fixture
def stub() -> Iterator[Callable[..., tuple[str, StubHandle]]]:
    """Start a stub with the given faults; every stub started in the test is stopped after it."""
    handles: list[StubHandle] = []

    def start(**faults: Any) -> tuple[str, StubHandle]:
        url, handle = start_stub_server(**faults)
        handles.append(handle)
        return url, handle

    yield start
    for handle in handles:
        handle.stop()

"""Fixtures for throughput tests: the loopback OpenAI-compatible server, and wiring that talks to it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from reasongen.testing.openai_server import StubHandle, start_stub_server


@pytest.fixture
def stub() -> Iterator[Callable[..., tuple[str, StubHandle]]]:
    handles: list[StubHandle] = []

    def start(**faults: Any) -> tuple[str, StubHandle]:
        url, handle = start_stub_server(**faults)
        handles.append(handle)
        return url, handle

    yield start
    for handle in handles:
        handle.stop()


from tests.queue.conftest import broker_url, queue_settings, start_worker  # noqa: E402,F401 - real workers

"""Fixtures for throughput tests: the loopback OpenAI-compatible server (as in generation tests) and real workers."""

from __future__ import annotations

from tests.generation.conftest import stub  # noqa: F401 - the loopback server, stopped after each test
from tests.queue.conftest import broker_url, queue_settings, start_worker  # noqa: F401 - real workers

"""Fixtures for provider batch mode: a PostgreSQL database, the loopback server with its batch API."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from reasongen.bootstrap import Wiring, bootstrap
from reasongen.settings import Settings
from reasongen.testing.openai_server import StubHandle, start_stub_server
from tests.helpers import add_records
from workers.planning import BatchRequest, plan_batch

KEY = "sk-batch-test-" + "k3y" * 5
FAST = dict(batch_poll_min_s=0.05, batch_poll_max_s=0.2, max_attempts=3)


@pytest.fixture
def server() -> Iterator[Callable[..., tuple[str, StubHandle]]]:
    handles: list[StubHandle] = []

    def start(**faults: Any) -> tuple[str, StubHandle]:
        url, handle = start_stub_server(api_key=KEY, **faults)
        handles.append(handle)
        return url, handle

    yield start
    for handle in handles:
        handle.stop()


@pytest.fixture
def batch_wired(pg_url: str) -> Iterator[Callable[..., Wiring]]:
    made: list[Wiring] = []

    def make(base_url: str, **overrides: Any) -> Wiring:
        settings = Settings(database_url=pg_url, openai_base_url=base_url, openai_api_key=KEY, redis_url=None,
                            broker_url=None, prices={"gpt-4o-mini": (0.15, 0.60)}, **{**FAST, **overrides})
        wired = bootstrap(settings)
        made.append(wired)
        return wired

    yield make
    for wired in made:
        wired.close()


ROWS = [{"instruction": f"Add {i} and 3.", "output": f"The sum is {i + 3}.", "key": f"k{i}"} for i in range(40)]


def plan(wired: Wiring, rows: list[dict[str, Any]] = ROWS, twins: int = 0, **req: Any) -> int:
    """Add the rows (and ``twins`` more records with the first row's exact content) and plan a teacher batch."""
    from sqlalchemy import update

    from storage.models import Record

    with wired.uow() as uow:
        ids = add_records(uow, "ds", [*rows, *({**rows[0], "key": f"twin{i}"} for i in range(twins))])
        if twins:
            first = uow.records.by_ids([ids[0]])[0].content_hash
            uow.session.execute(update(Record).where(Record.id.in_(ids[len(rows):])).values(content_hash=first))
            uow.commit()
    values: dict[str, Any] = {"dataset": "ds", "backend": "teacher", "model": "gpt-4o-mini", **req}
    return plan_batch(wired, BatchRequest(**values)).batch_id


def until_jobs_closed(wired: Any, batch_id: int, timeout: float = 20) -> None:
    """Poll the batch's provider jobs until none is open (a cancelled job closes once the server says so)."""
    from workers import provider_jobs

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        provider_jobs.poll(wired, batch_id=batch_id)
        with wired.uow() as uow:
            if uow.provider_jobs.open_count(batch_id) == 0:
                return
        time.sleep(0.05)
    raise AssertionError("the cancelled job never closed")

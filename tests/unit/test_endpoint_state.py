"""The endpoint state a chunk records on its batch: written when it changes, not at every sub-batch boundary."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy import event

from generation import endpoint_state
from reasongen.bootstrap import bootstrap
from reasongen.settings import Settings
from tests.helpers import add_records
from workers.planning import BatchRequest, plan_batch


@dataclass
class _State:
    limit: int
    phase: str = "steady"
    reason: str = "latency holds"


class _Backend:
    def __init__(self) -> None:
        self.state = _State(8)

    def mode_report(self) -> str:
        return "json_schema"

    def concurrency_state(self) -> _State:
        return self.state


def _batch(wired) -> int:  # type: ignore[no-untyped-def]
    with wired.uow() as uow:
        add_records(uow, "ds", [{"instruction": "Q?"}])
        uow.commit()
    return plan_batch(wired, BatchRequest(dataset="ds", backend="fake")).batch_id


def _statements(wired) -> list[str]:  # type: ignore[no-untyped-def]
    seen: list[str] = []
    event.listen(wired.engine, "before_cursor_execute", lambda _c, _cur, stmt, *_: seen.append(stmt))
    return seen


def test_the_same_state_is_written_once_and_a_change_again(wired):
    batch_id = _batch(wired)
    backend, statements = _Backend(), _statements(wired)
    endpoint_state.record(wired.uow, batch_id, backend)
    assert any(s.startswith("UPDATE batches") for s in statements)
    written = len(statements)
    for _ in range(5):  # five more sub-batch boundaries, nothing changed: not even a read
        endpoint_state.record(wired.uow, batch_id, backend)
    assert len(statements) == written
    backend.state = _State(16, reason="grew")
    endpoint_state.record(wired.uow, batch_id, backend)
    assert any(s.startswith("UPDATE batches") for s in statements[written:])
    with wired.uow() as uow:
        batch = uow.batches.get(batch_id)
        assert (batch.response_mode, batch.concurrency_limit) == ("json_schema", 16)
        assert batch.concurrency_reason == "steady: grew"


def test_another_database_with_the_same_batch_id_is_still_written(_pg_databases):
    """Two fresh databases both number their first batch 1: what was written on one says nothing of the other."""
    if isinstance(_pg_databases, Exception):
        pytest.skip(f"PostgreSQL: {_pg_databases}")
    first, second = (bootstrap(Settings(database_url=_pg_databases.new(), broker_url=None)) for _ in range(2))
    try:
        ids = [_batch(first), _batch(second)]
        assert ids[0] == ids[1]
        endpoint_state.record(first.uow, ids[0], _Backend())
        endpoint_state.record(second.uow, ids[1], _Backend())
        with second.uow() as uow:
            assert uow.batches.get(ids[1]).concurrency_limit == 8
    finally:
        first.close()
        second.close()

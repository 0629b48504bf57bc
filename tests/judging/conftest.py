from __future__ import annotations

import pytest

from review.policy import PolicySpec, save_policy
from tests.helpers import add_records
from workers.inprocess import run_here
from workers.planning import BatchRequest, plan_batch


def make_policy(wired, name="strict", approve_min=4.0, reject_max=2.0, require_no_flags=False) -> PolicySpec:
    spec = PolicySpec(name, approve_min, reject_max, require_no_flags)
    with wired.uow() as uow:
        save_policy(uow, spec)
        uow.commit()
    return spec


def seed(wired, scores=(5, 1, 3), dataset="ds") -> list[int]:
    """One English record per forced judge score (the fake judge reads a [[judge:N]] marker)."""
    rows = [{"key": f"r{i}", "instruction": f"Question {i} [[judge:{s}]]", "output": f"answer {i}"}
            for i, s in enumerate(scores)]
    with wired.uow() as uow:
        return add_records(uow, dataset, rows)


def generate(wired, *, judge="fake", policy=None, then=None, dataset="ds", chunk_size=2):
    from judging.plan import judge_params

    req = BatchRequest(dataset=dataset, backend="fake", chunk_size=chunk_size, then=then,
                       extra_params=judge_params(wired, judge, None, "default", policy))
    planned = plan_batch(wired, req)
    run_here(wired, planned.batch_id)
    return planned.batch_id


@pytest.fixture
def followups(monkeypatch):
    """The follow-ups fired in process (recorded instead of building)."""
    from workers import dispatch

    calls: list[tuple[int, str]] = []
    monkeypatch.setattr(dispatch, "run_followup_here", lambda w, batch_id, then: calls.append((batch_id, then)))
    return calls

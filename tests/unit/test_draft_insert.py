"""The bulk draft insert (on PostgreSQL one statement of unnested arrays): what goes in comes back, omitted
columns get the model's defaults, and a key already held by a good draft is skipped."""

from __future__ import annotations

from sqlalchemy import select

from storage.models import Draft
from tests.helpers import add_records


def _row(record_id: int, key: str, **extra: object) -> dict[str, object]:
    return dict(record_id=record_id, batch_id=None, cache_key=key, record_hash="h" * 64, template_name="reason",
                template_hash="t" * 64, backend="teacher", model="m", status="pending", **extra)


def test_values_defaults_and_conflicts_round_trip(wired):
    with wired.uow() as uow:
        a, b, c = add_records(uow, "ds", [{"instruction": f"Q{i}?"} for i in range(3)])
    rows = [_row(a, "k1", params={"temperature": 0.2, "seed": None}, flags=["lang", {"n": 1}],
                 reasoning="因为 7 是质数。", response=None, prompt_tokens=12, cost_usd=0.5, is_fake=True),
            _row(b, "k2")]  # params, flags, reasoning, tokens... left to the model's defaults
    with wired.uow() as uow:
        assert uow.drafts.add_many(rows) == 2
        uow.commit()
    with wired.uow() as uow:  # k1 is held by a good draft: skipped; c is new
        assert uow.drafts.add_many([_row(a, "k1", reasoning="again"), _row(c, "k3")]) == 1
        uow.commit()
    with wired.uow() as uow:
        got = {d.cache_key: d for d in uow.session.scalars(select(Draft))}
        first, second = got["k1"], got["k2"]
        assert (first.params, first.flags, first.reasoning) == ({"temperature": 0.2, "seed": None},
                                                                ["lang", {"n": 1}], "因为 7 是质数。")
        assert (first.response, first.prompt_tokens, first.cost_usd, first.is_fake) == (None, 12, 0.5, True)
        assert (second.params, second.flags, second.reasoning, second.prompt_tokens) == ({}, [], None, 0)
        assert (second.version, second.edited, second.is_current) == (1, False, True)
        assert sorted(got) == ["k1", "k2", "k3"] and got["k1"].reasoning != "again"

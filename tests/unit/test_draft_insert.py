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


def test_awkward_text_round_trips(wired):
    """The rows travel as one JSON document on PostgreSQL: quotes, backslashes, control characters, emoji and
    JSON-looking text come back as they went in."""
    awkward = 'He said "7\\n" \\u0041 {"k": [1]}\n\ttab \x07 bell 🙂 ＡＢ 中文 \\'
    with wired.uow() as uow:
        (a,) = add_records(uow, "ds", [{"instruction": "Q?"}])
        uow.drafts.add_many([_row(a, "k1", reasoning=awkward, raw_text=awkward, flags=[awkward],
                                  params={"stop": ["\n", '"']}, latency_s=1e-9, cost_usd=123456.789)])
        uow.commit()
    with wired.uow() as uow:
        d = uow.session.scalars(select(Draft)).one()
        assert (d.reasoning, d.raw_text, d.flags, d.params) == (awkward, awkward, [awkward], {"stop": ["\n", '"']})
        assert (d.latency_s, d.cost_usd) == (1e-9, 123456.789)


def test_saving_a_sub_batch_is_the_same_few_statements_whatever_its_size(pg_url):
    """psycopg caches (and the server prepares) a statement by its text: a save of 3 drafts and one of 40 must
    send the same texts, or every sub-batch size is parsed anew (long expanded IN lists are parsed every call)."""
    from sqlalchemy import event

    from reasongen.bootstrap import bootstrap
    from reasongen.settings import Settings

    wired = bootstrap(Settings(database_url=pg_url, broker_url=None))
    seen: list[str] = []
    event.listen(wired.engine, "before_cursor_execute", lambda _c, _cur, stmt, *_: seen.append(stmt))
    try:
        with wired.uow() as uow:
            ids = add_records(uow, "ds", [{"instruction": f"Q{i}?"} for i in range(50)])
            uow.commit()
        texts = []
        for part in (ids[:3], ids[3:43]):
            seen.clear()
            with wired.uow() as uow:
                assert uow.drafts.add_many([_row(r, f"k{r}") for r in part]) == len(part)
                uow.commit()
            texts.append([s for s in seen if "drafts" in s])
        assert texts[0] == texts[1] and len(texts[0]) <= 4
        assert all(len(s) < 4096 for s in texts[0])
    finally:
        wired.close()

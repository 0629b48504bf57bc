"""generate_drafts with the fake and the teacher backends, stored on SQLite and PostgreSQL."""

import logging
from types import SimpleNamespace

from sqlalchemy import func, select, text

from generation.backends import create_backend
from generation.backends.fake import FakeBackend
from generation.retry import Backoff
from generation.run import cache_key, generate_drafts
from generation.templates import load_template
from reasongen.settings import Settings
from storage.models import Draft
from tests.helpers import add_records

KEY = "sk-live-do-not-store-7c1d2e3f"
ROWS = [{"instruction": "Add 2 and 3.", "output": "The sum is 5."},
        {"instruction": "二と三を足すと？", "lang": "ja", "output": "答えは5です。"},
        {"instruction": "Name a colour.", "output": "Blue."}]


def _drafts(wired):
    table = Draft.__table__
    with wired.uow() as uow:
        rows = uow.session.execute(select(table).order_by(table.c.record_id, table.c.id)).mappings().all()
    return [SimpleNamespace(**row) for row in rows]


def test_checks_run_before_saving_and_flags_are_stored(wired):
    with wired.uow() as uow:
        ids = add_records(uow, "d", ROWS)
    generate_drafts(wired.uow, ids, FakeBackend(copy_reference=True), load_template())
    flags = {d.record_id: d.flags for d in _drafts(wired)}
    assert "not_english:response" in flags[ids[1]]  # told to, the fake copies the Japanese reference answer
    assert "not_english:response" not in flags[ids[0]]


def test_a_failed_draft_is_retried_on_the_next_run_and_replaced(wired):
    with wired.uow() as uow:
        ids = add_records(uow, "d", ROWS)
    first = generate_drafts(wired.uow, ids, FakeBackend(fail_keys=["r0"]), load_template())
    second = generate_drafts(wired.uow, ids, FakeBackend(), load_template())
    assert (first.done, first.failed, second.done, second.skipped) == (2, 1, 1, 2)
    drafts = _drafts(wired)
    assert [d.status for d in drafts] == ["pending"] * 3 and all(d.is_current for d in drafts)


def test_the_same_key_twice_keeps_one_row_and_the_current_draft(wired):
    with wired.uow() as uow:
        [rid] = add_records(uow, "d", ROWS[:1])
    backend, template = FakeBackend(), load_template()
    generate_drafts(wired.uow, [rid], backend, template)
    [draft] = _drafts(wired)
    values = {c: getattr(draft, c) for c in ("record_id", "cache_key", "record_hash", "template_name",
                                           "template_hash", "backend", "model")}
    with wired.uow() as uow:  # a concurrent writer that lost the race on the key
        assert uow.drafts.add({**values, "params": {}}) is False
        uow.commit()
    [again] = _drafts(wired)
    assert again.id == draft.id and again.is_current


def test_force_and_notes_make_new_drafts_and_retire_the_old(wired):
    with wired.uow() as uow:
        [rid] = add_records(uow, "d", ROWS[:1])
    backend, template = FakeBackend(), load_template()
    generate_drafts(wired.uow, [rid], backend, template)
    generate_drafts(wired.uow, [rid], backend, template, notes={rid: "Show the steps."})
    generate_drafts(wired.uow, [rid], backend, template, force=True)
    drafts = _drafts(wired)
    assert len(drafts) == 3 and [d.is_current for d in drafts] == [False, False, True]


def test_cache_key_covers_template_model_and_params():
    template, other = load_template("default"), load_template("concise")
    a, b = FakeBackend(), FakeBackend(model="other")
    keys = {cache_key("h", template, a), cache_key("h", other, a), cache_key("h", template, b),
            cache_key("h2", template, a)}
    assert len(keys) == 4 and cache_key("h", template, a) == cache_key("h", template, a)


def test_teacher_run_stores_drafts_with_cost_and_never_the_key(wired, stub, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    url, handle = stub(api_key=KEY, script=["error", "malformed"])
    settings = Settings(database_url=wired.settings.database_url, openai_base_url=url, openai_api_key=KEY,
                        teacher_max_retries=2, redis_url=None)
    backend = create_backend("teacher", settings, backoff=Backoff(0.01, 0.02))
    with wired.uow() as uow:
        ids = add_records(uow, "d", ROWS * 4)
    try:
        stats = generate_drafts(wired.uow, ids, backend, load_template(), sub_batch_size=3)
    finally:
        backend.close()
    assert (stats.done, stats.failed) == (12, 0) and stats.cost_usd > 0
    served = handle.stats()  # every request carried the key (auth_ok also counts the teacher's GET /v1/models)
    assert served.get("auth_bad", 0) == 0 and served["auth_ok"] >= served["requests"]
    with wired.uow() as uow:
        dump = " ".join(str(row) for row in uow.session.execute(text("SELECT * FROM drafts")).all())
    assert "The sum is 5." in dump
    assert KEY not in dump + caplog.text + capsys.readouterr().out


def test_fake_drafts_are_marked_fake(wired):
    with wired.uow() as uow:
        ids = add_records(uow, "d", ROWS)
    generate_drafts(wired.uow, ids, create_backend("fake", wired.settings), load_template())
    with wired.uow() as uow:
        assert uow.session.scalar(select(func.count()).select_from(Draft).where(Draft.is_fake)) == 3


def test_stub_drafts_for_japanese_records_pass_the_checks(wired, stub):
    url, _ = stub()
    backend = create_backend("teacher", Settings(database_url="sqlite://", openai_base_url=url, redis_url=None))
    with wired.uow() as uow:
        ids = add_records(uow, "d", ROWS)
    try:
        generate_drafts(wired.uow, ids, backend, load_template())
    finally:
        backend.close()
    drafts = _drafts(wired)
    assert [d.flags for d in drafts] == [[], [], []]
    assert drafts[1].reasoning.startswith("Please translate the following Japanese input texts")


def test_backends_that_overlap_requests_commit_in_bigger_sub_batches():
    from generation.run import DEFAULT_SUB_BATCH, SUBMIT_SUB_BATCH, default_sub_batch

    class Overlapping:
        def submit(self, prompts):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    assert default_sub_batch(Overlapping()) == SUBMIT_SUB_BATCH > DEFAULT_SUB_BATCH == default_sub_batch(object())

"""Gradual rebuild: only stale records, with the reviewer's note in the prompt."""

from __future__ import annotations

import hashlib
import json

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from cli.main import app
from generation.restructure import restructure
from generation.templates import load_template
from storage.models import Draft, Record
from tests.helpers import add_records

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    monkeypatch.delenv("REASONGEN_BROKER_URL", raising=False)


def cli(db_url: str, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["--database-url", db_url, *args])


def make_stale(wired, ids: list[int]) -> None:  # type: ignore[no-untyped-def]
    with wired.uow() as uow:
        uow.session.execute(update(Record).where(Record.id == ids[1]).values(input="new text", content_hash="c" * 64))
        uow.session.execute(update(Draft).where(Draft.record_id == ids[2])
                            .values(status="rejected", review_note="Use metric units."))
        uow.session.execute(update(Draft).where(Draft.record_id == ids[3]).values(status="rejected"))  # no note
        uow.commit()
        add_records(uow, "ds", [{"instruction": "A new question", "key": "new"}])


def test_rebuild_regenerates_stale_records_only(wired, db_url):
    with wired.uow() as uow:
        ids = add_records(uow, "ds", [{"instruction": f"Q{i}", "key": f"k{i}"} for i in range(6)])
    assert cli(db_url, "generate", "-d", "ds", "-b", "fake").exit_code == 0
    make_stale(wired, ids)

    dry = cli(db_url, "rebuild", "-d", "ds", "-b", "fake", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    plan = json.loads(dry.output)
    reasons = {r["key"]: r["reason"] for r in plan["records"]}
    assert reasons == {"k1": "record changed", "k2": "rejected with note", "new": "no draft"}
    assert plan["estimate"]["records"] == 3 and plan["estimate"]["prompt_tokens"] > 0

    limited = json.loads(cli(db_url, "rebuild", "-d", "ds", "-b", "fake", "--dry-run", "--limit", "1", "--json").output)
    assert [r["key"] for r in limited["records"]] == ["k1"]

    done = cli(db_url, "rebuild", "-d", "ds", "-b", "fake", "--json")
    summary = json.loads(done.output)
    assert (summary["kind"], summary["total"], summary["done"]) == ("rebuild", 3, 3)
    with wired.uow() as uow:
        current = uow.batch_stats.current_drafts(ids, load_template().name, "fake-teacher")
        record = uow.session.get(Record, ids[2])
        prompt = load_template().render(restructure(record), "Use metric units.")
        assert "Use metric units." in prompt.user
        assert current[ids[2]].raw_text == "fake:" + hashlib.sha256(prompt.user.encode()).hexdigest()[:8]
        assert current[ids[1]].record_hash == "c" * 64
        assert current[ids[3]].status == "rejected"  # a rejection without a note is a decision, not stale
    assert "Nothing is stale." in cli(db_url, "rebuild", "-d", "ds", "-b", "fake").output


def test_a_record_rejected_max_regenerations_times_is_left_for_people(wired, db_url, monkeypatch):
    """Each rejection has a new note (a new request each time), yet after REASONGEN_MAX_REGENERATIONS rejections the
    record is no longer regenerated: it waits for a person."""
    monkeypatch.setenv("REASONGEN_MAX_REGENERATIONS", "2")
    with wired.uow() as uow:
        (rid,) = add_records(uow, "ds", [{"instruction": "Q", "key": "k"}])
    assert cli(db_url, "generate", "-d", "ds", "-b", "fake").exit_code == 0

    def reject_current(note: str) -> None:
        with wired.uow() as uow:
            uow.session.execute(update(Draft).where(Draft.record_id == rid, Draft.is_current.is_(True))
                                .values(status="rejected", review_note=note))
            uow.commit()

    reject_current("Shorter, please.")
    assert json.loads(cli(db_url, "rebuild", "-d", "ds", "-b", "fake", "--json").output)["sent"] == 1
    reject_current("Show the arithmetic.")
    dry = json.loads(cli(db_url, "rebuild", "-d", "ds", "-b", "fake", "--dry-run", "--json").output)
    assert dry["records"] == [] and dry["estimate"]["held_back"] == 1
    out = cli(db_url, "rebuild", "-d", "ds", "-b", "fake")
    assert "Nothing is stale." in out.output and "rejected 2 times" in " ".join(out.output.split())

"""Review fixtures: a few records (en/ja/zh) with fake drafts, some of them flagged or failed."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from generation.backends import create_backend
from generation.run import generate_drafts
from generation.templates import load_template
from storage.models import Draft, Record
from tests.helpers import add_records

ROWS = [
    {"key": "en-1", "lang": "en", "field": "math", "uniqueness": "low", "instruction": "What is 2+2?",
     "output": "4"},
    {"key": "en-2", "lang": "en", "field": "ml", "uniqueness": "high", "instruction": "Summarise.",
     "input": "LoRA trains small matrices.", "output": "Small adapters."},
    {"key": "ja-1", "lang": "ja", "field": "math", "uniqueness": "low", "instruction": "二たす二は？",
     "output": "Four."},
    {"key": "zh-1", "lang": "zh", "field": "ml", "uniqueness": "low", "instruction": "什么是微调？",
     "input": "请简要回答。", "output": "Fine-tuning adapts a model."},
    {"key": "en-bad", "lang": "en", "field": "math", "uniqueness": "low", "instruction": "Broken?",
     "output": "x"},
]


def make_drafts(wired, dataset: str = "d", rows: list[dict] = ROWS) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Records and fake drafts; returns record key -> draft id. en-2 is flagged, en-bad failed."""
    with wired.uow() as uow:
        record_ids = add_records(uow, dataset, rows)
    backend = create_backend("fake", wired.settings, fail_keys=["en-bad"])
    generate_drafts(wired.uow, record_ids, backend, load_template())
    with wired.uow() as uow:
        ids = dict(uow.session.execute(select(Record.key, Draft.id).join(Draft, Draft.record_id == Record.id)).all())
        uow.session.execute(update(Draft).where(Draft.id == ids["en-2"]).values(flags=["lang_mismatch"]))
        uow.commit()
    return ids


@pytest.fixture
def drafts(wired) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return make_drafts(wired)


def set_status(wired, draft_id: int, status: str) -> None:  # type: ignore[no-untyped-def]
    """Put a draft in a status directly (test set-up, not a review change)."""
    with wired.uow() as uow:
        uow.session.execute(update(Draft).where(Draft.id == draft_id).values(status=status))
        uow.commit()


def draft(wired, draft_id: int) -> Draft:  # type: ignore[no-untyped-def]
    with wired.uow() as uow:
        row = uow.reviews.load(draft_id)
        assert row is not None
        return row.draft


def events(wired, draft_id: int) -> list:  # type: ignore[no-untyped-def]
    with wired.uow() as uow:
        return uow.reviews.events(draft_id)

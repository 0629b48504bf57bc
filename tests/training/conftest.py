"""Fixtures for the build/train tests: a tiny random Phi model and a tokenizer trained here (no downloads)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from reasongen.bootstrap import Wiring, bootstrap
from reasongen.settings import Settings
from storage.models import Draft
from tests.helpers import add_records

FIELDS = ["machine-learning", "quality-engineering"]
TEXTS = {
    "en": ("What is supervised fine-tuning, case {i}?", ""),
    "ja": ("直交表とは何ですか？ 例{i}", "実験計画"),
    "zh": ("什么是监督微调？ 例{i}", ""),
}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A folder holding a random 2-layer PhiForCausalLM and its BPE tokenizer, loadable by from_pretrained."""
    from training.tiny import make_tiny_model

    return str(make_tiny_model(tmp_path_factory.mktemp("tiny-phi")))


@pytest.fixture
def sqlite_wired(sqlite_url: str) -> Iterator[Wiring]:
    """Training tests need one database, not both: the storage parts are tested on both elsewhere."""
    w = bootstrap(Settings(database_url=sqlite_url, broker_url=None))
    yield w
    w.close()


def make_rows(n: int, start: int = 0) -> list[dict]:
    rows = []
    for i in range(start, start + n):
        lang = ("en", "ja", "zh")[i % 3]
        instruction, input_text = TEXTS[lang]
        rows.append({"key": f"rec-{i:05d}", "lang": lang, "field": FIELDS[(i // 3) % 2],
                     "uniqueness": ("low", "high")[i % 2], "instruction": instruction.format(i=i),
                     "input": input_text, "output": f"Answer number {i}."})
    return rows


def approve_all(wired: Wiring, dataset: str, rows: list[dict]) -> list[int]:
    """Records + fake drafts, all approved (the review commands are another stage's)."""
    from generation.backends import create_backend
    from generation.run import generate_drafts
    from generation.templates import load_template

    with wired.uow() as uow:
        ids = add_records(uow, dataset, rows)
    generate_drafts(wired.uow, ids, create_backend("fake", wired.settings), load_template())
    with wired.uow() as uow:
        uow.session.execute(update(Draft).where(Draft.record_id.in_(ids)).values(status="approved"))
        uow.commit()
    return ids


@pytest.fixture
def repeated_build(sqlite_wired, tmp_path):  # type: ignore[no-untyped-def]
    """Six short, similar examples (some in eval), small enough to learn in a few dozen steps."""
    from training.build import BuildOptions, build_sft

    approve_all(sqlite_wired, "ds", make_rows(6))
    return build_sft(sqlite_wired.uow, BuildOptions("ds", out_dir=str(tmp_path / "build"), eval_fraction=0.3))


def tiny_config(model: str, tmp_path: Path, **overrides):  # type: ignore[no-untyped-def]
    from training.config import TrainConfig

    base = dict(base_model=model, lora_r=8, lora_alpha=16, lora_dropout=0.0, max_steps=30, learning_rate=1e-2,
                batch_size=6, logging_steps=5, save_steps=100, max_length=512, output_dir=str(tmp_path / "run"))
    return TrainConfig(**{**base, **overrides})

"""Decontamination: drop training examples that share an n-gram with an evaluation set.

Text is tokenised the same way on both sides: Latin-script words (lower-cased) are one token each, and every
CJK character (kana, han, hangul) is a token of its own, since Japanese and Chinese are written without spaces;
a 13-gram of characters is a short phrase, as a 13-gram of words is in English. An example is compared on its
instruction, input, transformed input, reasoning and response (template boilerplate excluded), the eval set
on every text field of each row. n-grams are stored as 64-bit hashes, so an eval set of a few million tokens
fits in memory.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_NGRAM = 13
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall((text or "").lower())


def ngram_hashes(text: str, n: int) -> set[int]:
    toks = tokens(text)
    if len(toks) < n:  # shorter than one n-gram: the whole text is its only gram
        toks_n: Iterable[list[str]] = [toks] if toks else []
    else:
        toks_n = (toks[i : i + n] for i in range(len(toks) - n + 1))
    return {int.from_bytes(hashlib.blake2b("\x1f".join(g).encode(), digest_size=8).digest(), "big")
            for g in toks_n}


@dataclass
class EvalIndex:
    source: str
    n: int
    grams: set[int]
    rows: int

    def hits(self, text: str) -> bool:
        toks = tokens(text)
        if len(toks) < self.n:  # a short example is contaminated only by a whole-text match
            return bool(toks) and next(iter(ngram_hashes(text, self.n))) in self.grams
        return not self.grams.isdisjoint(ngram_hashes(text, self.n))

    def describe(self, dropped: list[int]) -> dict[str, Any]:
        return {"source": self.source, "ngram": self.n, "eval_rows": self.rows, "eval_ngrams": len(self.grams),
                "dropped": len(dropped), "draft_ids": dropped}


def build_index(source: str, texts: Iterable[str], n: int = DEFAULT_NGRAM, rows: int = 0) -> EvalIndex:
    if n < 1:
        raise ValueError(f"--ngram must be at least 1 (got {n})")
    grams: set[int] = set()
    count = 0
    for text in texts:
        count += 1
        grams |= ngram_hashes(text, n)  # a text shorter than n is one gram: only an exact short match hits it
    return EvalIndex(source, n, grams, rows or count)


def _file_texts(path: Path) -> Iterator[str]:
    """Every text value of every row of a JSONL/JSON/CSV/Parquet/datasets file; a .txt file line by line."""
    if path.suffix == ".txt":
        yield from path.read_text(encoding="utf-8").splitlines()
        return
    from storage.ingest.readers import open_reader
    from storage.ingest.types import RawRecord

    for item in open_reader(path):
        if isinstance(item, RawRecord):
            yield " \n ".join(str(v) for v in item.data.values() if isinstance(v, str))


def load_index(uow: Any, source: str, n: int = DEFAULT_NGRAM) -> EvalIndex:
    """``source``: a file (JSONL, JSON, CSV, Parquet, a datasets folder, or .txt) or the name of a dataset."""
    path = Path(source)
    if path.exists():
        texts = list(_file_texts(path))
        return build_index(str(path), texts, n)
    try:
        ds = uow.records.dataset(source)
    except LookupError:
        raise FileNotFoundError(f"--decontaminate {source!r}: no such file, and no dataset of that name") from None
    from sqlalchemy import select

    from storage.models import Record

    stmt = select(Record.instruction, Record.input, Record.output).where(Record.dataset_id == ds.id,
                                                                        Record.deleted_at.is_(None))
    texts = [" \n ".join(filter(None, row)) for row in uow.session.execute(stmt)]
    return build_index(f"dataset:{source}", texts, n)


def example_text(example: Any, row: Any | None = None) -> str:
    parts = [example.instruction, example.input, example.completion]
    if row is not None:
        parts += [getattr(row, "instruction", ""), getattr(row, "input", "")]
    return " \n ".join(p for p in parts if p)


def drop_contaminated(examples: list[Any], index: EvalIndex | None) -> tuple[list[Any], list[int]]:
    if index is None:
        return examples, []
    kept, dropped = [], []
    for e in examples:
        (dropped.append(e.draft_id) if index.hits(example_text(e)) else kept.append(e))
    return kept, dropped

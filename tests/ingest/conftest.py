"""Fixtures for ingest tests: small files written per test, and a one-call ingest."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from reasongen.bootstrap import Wiring
from storage.ingest import IngestOptions, IngestSummary, Rejection, ingest_file

EN = {"id": "en-1", "lang": "en", "instruction": "What is a control chart for?", "input": "",
      "output": "It separates ordinary variation from special causes.", "field": "quality", "uniqueness": "low"}
JA = {"id": "ja-1", "lang": "ja", "instruction": "過学習とは何ですか。", "input": "",
      "output": "学習データに合わせすぎる状態です。", "field": "ml", "uniqueness": "high"}
ZH = {"id": "zh-1", "lang": "zh", "instruction": "求中位数。", "input": "7, 3, 9",
      "output": "中位数是7。", "field": "math", "uniqueness": "low"}


def jsonl(*rows: dict) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str | bytes], Path]:
    def _write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return path

    return _write


@pytest.fixture
def ingest(wired: Wiring) -> Callable[..., tuple[IngestSummary, list[str]]]:
    """ingest(path, dataset="d", **options) -> (summary, ["file:line: reason", ...])."""

    def _ingest(path: Path, dataset: str = "d", **options: object) -> tuple[IngestSummary, list[str]]:
        rejected: list[Rejection] = []
        opts = IngestOptions(dataset=dataset, **options)  # type: ignore[arg-type]
        summary = ingest_file(wired.uow, path, opts, on_reject=rejected.append)
        return summary, [str(r) for r in rejected]

    return _ingest

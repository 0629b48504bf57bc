"""Builds: the approved drafts a build reads, and the build rows with their lineage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Build, Draft, Record
from storage.repositories.records import RECORD_FILTERS


RECORD_COLUMNS = ("id", "key", "lang", "instruction", "input", "output", "field", "uniqueness", "content_hash")
DRAFT_COLUMNS = ("id", "template_hash", "transformed_input", "reasoning", "response", "is_fake", "flags")


class ApprovedRow(NamedTuple):
    """A record's columns, then its draft's prefixed with draft_ (a tuple: fast to build and read)."""

    id: int
    key: str
    lang: str
    instruction: str
    input: str
    output: str
    field: str | None
    uniqueness: str | None
    content_hash: str
    draft_id: int
    draft_template_hash: str
    draft_transformed_input: str | None
    draft_reasoning: str | None
    draft_response: str | None
    draft_is_fake: bool
    draft_flags: list[str] | None


class BuildNotFoundError(LookupError):
    def __init__(self, build_id: int):
        super().__init__(f"No build with id {build_id}. Make one with: reasongen build-sft --dataset NAME --out DIR")


class BuildRepository:
    def __init__(self, session: Session):
        self.session = session

    def approved_rows(self, dataset_id: int, where: dict[str, str] | None = None) -> list[ApprovedRow]:
        """The current approved draft of each live record, sorted by record key.

        A record may have several current drafts (one per template and model); the newest approved wins.
        """
        stmt = (
            select(*(getattr(Record, c) for c in RECORD_COLUMNS), *(getattr(Draft, c) for c in DRAFT_COLUMNS))
            .join(Draft, Draft.record_id == Record.id)
            .where(Record.dataset_id == dataset_id, Record.deleted_at.is_(None),
                   Draft.status == "approved", Draft.is_current.is_(True))
        )
        for name, value in (where or {}).items():
            if name not in RECORD_FILTERS:
                raise ValueError(f"Unknown filter {name!r}; use one of: {', '.join(RECORD_FILTERS)}")
            stmt = stmt.where(RECORD_FILTERS[name] == value)
        newest: dict[int, ApprovedRow] = {}
        for values in self.session.execute(stmt):  # rows are tuples (Result.tuples() is deprecated)
            row = ApprovedRow(*values)
            if row.id not in newest or newest[row.id].draft_id < row.draft_id:
                newest[row.id] = row
        return sorted(newest.values(), key=lambda row: (row.key, row.id))

    def get(self, build_id: int) -> Build:
        found = self.session.get(Build, build_id)
        if found is None:
            raise BuildNotFoundError(build_id)
        return found

    def latest(self, dataset_id: int) -> Build | None:
        stmt = select(Build).where(Build.dataset_id == dataset_id).order_by(Build.id.desc()).limit(1)
        return self.session.scalar(stmt)

    def for_batch(self, batch_id: int) -> Build | None:
        return self.session.scalar(select(Build).where(Build.batch_id == batch_id).order_by(Build.id).limit(1))

    def add(self, dataset_id: int, parent_id: int | None, batch_id: int | None, params: dict[str, Any]) -> Build:
        """A build row with its id (flushed); finish() fills it once the files are written."""
        build = Build(dataset_id=dataset_id, parent_id=parent_id, batch_id=batch_id, params=params,
                      out_dir="", manifest={}, manifest_sha256="")
        self.session.add(build)
        self.session.flush()
        return build

    def finish(self, build: Build, out_dir: str, manifest: dict[str, Any], sha256: str) -> None:
        build.out_dir, build.manifest, build.manifest_sha256 = out_dir, manifest, sha256
        build.n_train, build.n_eval = manifest["counts"]["train"], manifest["counts"]["eval"]
        self.session.flush()

    def list(self, dataset_id: int | None = None) -> Sequence[Build]:
        stmt = select(Build).order_by(Build.id)
        if dataset_id is not None:
            stmt = stmt.where(Build.dataset_id == dataset_id)
        return self.session.scalars(stmt).all()

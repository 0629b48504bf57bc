"""Datasets and records."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from datetime import datetime

from sqlalchemy import BigInteger, Select, and_, any_, bindparam, exists, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from storage.models import Dataset, Draft, Record


class DatasetNotFoundError(LookupError):
    def __init__(self, name: str):
        super().__init__(f"No dataset named {name!r}. List datasets with: reasongen datasets")


@dataclass
class DatasetOverview:
    name: str
    records: int
    deleted: int
    languages: dict[str, int]
    created_at: datetime
    updated_at: datetime


@dataclass
class Staleness:
    """Live records that need (re)generation: never drafted, or changed since their current draft."""

    never_drafted: int = 0
    changed: int = 0
    shared: int = 0  # not stale: records whose current draft reuses an identical record's text

    @property
    def total(self) -> int:
        return self.never_drafted + self.changed


@dataclass
class Breakdown:
    dataset: str
    records: int
    groups: list[tuple[str, str | None, str | None, int]] = field(default_factory=list)  # lang, field, uniq, n
    stale: Staleness = field(default_factory=Staleness)


# Filters users may pass as --where key=value (comma separated).
RECORD_FILTERS = {"lang": Record.lang, "field": Record.field, "uniqueness": Record.uniqueness, "key": Record.key}


class RecordRepository:
    def __init__(self, session: Session):
        self.session = session

    def get_or_create_dataset(self, name: str) -> Dataset:
        found = self.session.scalar(select(Dataset).where(Dataset.name == name))
        if found is None:
            found = Dataset(name=name)
            self.session.add(found)
            self.session.flush()
        return found

    def dataset(self, name: str) -> Dataset:
        found = self.session.scalar(select(Dataset).where(Dataset.name == name))
        if found is None:
            raise DatasetNotFoundError(name)
        return found

    def datasets(self) -> Sequence[Dataset]:
        return self.session.scalars(select(Dataset).order_by(Dataset.name)).all()

    def touch_dataset(self, dataset_id: int, when: datetime) -> None:
        self.session.execute(update(Dataset).where(Dataset.id == dataset_id).values(updated_at=when))

    def overview(self) -> list[DatasetOverview]:
        """Every dataset with its live record count per language (for `reasongen datasets`)."""
        live = Record.deleted_at.is_(None)
        stmt = (
            select(Dataset, Record.lang, func.count(Record.id).filter(live), func.count(Record.id).filter(~live))
            .join(Record, Record.dataset_id == Dataset.id, isouter=True)
            .group_by(Dataset.id, Record.lang)
            .order_by(Dataset.name, Record.lang)
        )
        found: dict[int, DatasetOverview] = {}
        for ds, lang, n_live, n_deleted in self.session.execute(stmt):
            row = found.setdefault(ds.id, DatasetOverview(ds.name, 0, 0, {}, ds.created_at, ds.updated_at))
            row.records, row.deleted = row.records + n_live, row.deleted + n_deleted
            if lang is not None and n_live:
                row.languages[lang] = n_live
        return list(found.values())

    def breakdown(self, name: str) -> Breakdown:
        """Live record counts by lang x field x uniqueness, and how many are stale (`reasongen show`)."""
        ds = self.dataset(name)
        stmt = (
            select(Record.lang, Record.field, Record.uniqueness, func.count())
            .where(Record.dataset_id == ds.id, Record.deleted_at.is_(None))
            .group_by(Record.lang, Record.field, Record.uniqueness)
            .order_by(Record.lang, Record.field, Record.uniqueness)
        )
        groups = [tuple(row) for row in self.session.execute(stmt)]
        total = sum(int(row[3] or 0) for row in groups)
        return Breakdown(ds.name, total, groups, self.staleness(ds.id))  # type: ignore[arg-type]

    def staleness(self, dataset_id: int) -> Staleness:
        current = and_(Draft.record_id == Record.id, Draft.is_current.is_(True))
        has_draft = exists().where(current)
        is_fresh = exists().where(current, Draft.record_hash == Record.content_hash)
        is_shared = exists().where(current, Draft.shared_from_id.is_not(None))
        stmt = select(
            func.count().filter(~has_draft), func.count().filter(has_draft, ~is_fresh), func.count().filter(is_shared)
        ).where(Record.dataset_id == dataset_id, Record.deleted_at.is_(None))
        never, changed, shared = self.session.execute(stmt).one()
        return Staleness(never or 0, changed or 0, shared or 0)

    def by_ids(self, ids: Iterable[int]) -> list[Record]:
        ids = list(ids)
        rows = {r.id: r for r in self.session.scalars(select(Record).where(Record.id.in_(ids)))}
        return [rows[i] for i in ids if i in rows]

    def view_rows(self, ids: Sequence[int]) -> list[Any]:
        """``prompt_rows`` in the order of ``ids``: what a chunk renders its prompts from, as plain rows (loading
        ORM objects cost a lane 3-4 ms a sub-batch). On PostgreSQL one statement text for any count (``= ANY``)."""
        cols = (Record.id, Record.key, Record.lang, Record.instruction, Record.input, Record.output, Record.field,
                Record.uniqueness, Record.content_hash)
        ids = list(ids)
        if self.session.get_bind().dialect.name == "postgresql":
            where = Record.id == any_(bindparam("ids", ids, type_=ARRAY(BigInteger)))
        else:
            where = Record.id.in_(ids)
        rows = {r.id: r for r in self.session.execute(select(*cols).where(where))}
        return [rows[i] for i in ids if i in rows]

    def prompt_rows(self, ids: Sequence[int]) -> Sequence[Any]:
        """The columns a prompt is rendered from, as plain rows (no ORM objects): enqueue renders every record."""
        cols = (Record.id, Record.key, Record.lang, Record.instruction, Record.input, Record.output, Record.field,
                Record.uniqueness, Record.content_hash)
        return self.session.execute(select(*cols).where(Record.id.in_(list(ids)))).all()

    def by_key(self, key: str, dataset: str | None = None) -> list[tuple[str, Record]]:
        """(dataset name, record) of every live record with this key, in one dataset or in all."""
        stmt = (select(Dataset.name, Record).join(Dataset, Dataset.id == Record.dataset_id)
                .where(Record.key == key, Record.deleted_at.is_(None)).order_by(Dataset.name))
        if dataset is not None:
            stmt = stmt.where(Dataset.name == dataset)
        return [(name, record) for name, record in self.session.execute(stmt)]

    def select_ids(self, dataset_id: int, where: dict[str, str] | None = None, limit: int | None = None) -> Select[int]:
        """Live (not deleted) record ids of a dataset, filtered, in id order."""
        stmt = select(Record.id).where(Record.dataset_id == dataset_id, Record.deleted_at.is_(None))
        for name, value in (where or {}).items():
            if name not in RECORD_FILTERS:
                raise ValueError(f"Unknown filter {name!r}; use one of: {', '.join(RECORD_FILTERS)}")
            stmt = stmt.where(RECORD_FILTERS[name] == value)
        return stmt.order_by(Record.id).limit(limit)

    def ids(self, dataset_id: int, where: dict[str, str] | None = None, limit: int | None = None) -> list[int]:
        return list(self.session.scalars(self.select_ids(dataset_id, where, limit)))

    def count(self, dataset_id: int) -> int:
        stmt = select(func.count()).where(Record.dataset_id == dataset_id, Record.deleted_at.is_(None))
        return self.session.scalar(stmt) or 0


def parse_where(text: str | None) -> dict[str, str]:
    """'lang=ja,field=math' -> {'lang': 'ja', 'field': 'math'}, with a clear error on bad input."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"Bad filter {part!r}: expected name=value, e.g. lang=ja,field=math")
        out[name.strip()] = value.strip()
    return out

"""Datasets and records."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from storage.models import Dataset, Record


class DatasetNotFoundError(LookupError):
    def __init__(self, name: str):
        super().__init__(f"No dataset named {name!r}. List datasets with: reasongen datasets")


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

    def by_ids(self, ids: Iterable[int]) -> list[Record]:
        ids = list(ids)
        rows = {r.id: r for r in self.session.scalars(select(Record).where(Record.id.in_(ids)))}
        return [rows[i] for i in ids if i in rows]

    def select_ids(self, dataset_id: int, where: dict[str, str] | None = None, limit: int | None = None) -> Select:
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

"""Reviews: draft queries by filter, versioned draft updates, and the audit trail.

Every review change goes through :meth:`ReviewRepository.update_versioned`, whose WHERE clause holds
the version the reviewer saw: a stale writer updates nothing and gets a conflict instead of
overwriting someone else's decision.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Select,
    exists,
    func,
    insert,
    literal_column,
    select,
    tuple_,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from storage.models import Dataset, Draft, Judgement, Record, ReviewEvent
from storage.repositories.base import rowcount


@dataclass(frozen=True)
class DraftFilter:
    """Which drafts a listing or bulk decision covers. ``None`` means any."""

    status: str | None = None
    dataset: str | None = None
    lang: str | None = None
    field: str | None = None
    uniqueness: str | None = None
    flag: str | None = None  # drafts carrying this check flag
    no_flags: bool = False  # drafts with no flag at all
    is_fake: bool | None = None
    ids: tuple[int, ...] | None = None
    current_only: bool = True  # superseded drafts are history, not review work
    after_id: int | None = None  # keyset pagination: only drafts with a larger id (the web desk's next page)
    score_min: float | None = None  # a judgement's overall score at least / at most (judged drafts only)
    score_max: float | None = None


class DraftState(NamedTuple):
    id: int
    version: int
    status: str
    edited: bool
    review_note: str | None


class DraftRow(NamedTuple):
    """A detached snapshot: what the reviewer saw, still readable after the unit of work ends."""

    draft: Draft
    record: Record
    dataset: str


# Filter fields that are a plain equality on one column.
_EQUALS = {
    "status": Draft.status, "dataset": Dataset.name, "lang": Record.lang, "field": Record.field,
    "uniqueness": Record.uniqueness, "is_fake": Draft.is_fake,
}


class ReviewRepository:
    def __init__(self, session: Session):
        self.session = session

    # -- reading ---------------------------------------------------------------------------------
    def load(self, draft_id: int) -> DraftRow | None:
        """The draft as the database has it now (never a cached copy from this session)."""
        rows = self.find(DraftFilter(ids=(draft_id,), current_only=False))
        return rows[0] if rows else None

    def find(self, flt: DraftFilter, limit: int | None = None, exclude: Sequence[int] = ()) -> list[DraftRow]:
        stmt = self._rows_stmt(flt, exclude).limit(limit)
        # No autoflush: queued review events change no draft, and stay batched until the commit.
        options = {"populate_existing": True, "autoflush": False}
        return [self._snapshot(*r) for r in self.session.execute(stmt.execution_options(**options))]

    def iter_rows(self, flt: DraftFilter, page: int = 500) -> Iterator[DraftRow]:
        """All matching rows, fetched a page at a time (exports of large datasets)."""
        for row in self.session.execute(self._rows_stmt(flt).execution_options(yield_per=page)):
            yield self._snapshot(*row)

    def _snapshot(self, draft: Draft, record: Record, dataset: str) -> DraftRow:
        # Detached, so a rollback or the end of the unit of work does not expire what was read.
        for obj in (draft, record):
            if obj in self.session:
                self.session.expunge(obj)
        return DraftRow(draft, record, dataset)

    def count(self, flt: DraftFilter, exclude: Sequence[int] = ()) -> int:
        stmt = select(func.count()).select_from(self._rows_stmt(flt, exclude).subquery())
        return self.session.scalar(stmt) or 0

    def states(self, flt: DraftFilter) -> list[DraftState]:
        """The review state of matching drafts: what a bulk decision expects to find unchanged."""
        stmt = self._rows_stmt(flt).with_only_columns(
            Draft.id, Draft.version, Draft.status, Draft.edited, Draft.review_note)
        return [DraftState(*row) for row in self.session.execute(stmt)]

    def events(self, draft_id: int) -> list[ReviewEvent]:
        stmt = select(ReviewEvent).where(ReviewEvent.draft_id == draft_id).order_by(ReviewEvent.id)
        found = list(self.session.scalars(stmt))
        for event in found:  # detached like DraftRow: readable after the unit of work ends
            self.session.expunge(event)
        return found

    def last_event(self, reviewer: str) -> ReviewEvent | None:
        """This reviewer's latest change to any draft (what an undo takes back)."""
        stmt = select(ReviewEvent).where(ReviewEvent.reviewer == reviewer).order_by(ReviewEvent.id.desc()).limit(1)
        return self.session.scalars(stmt).first()

    # -- writing ---------------------------------------------------------------------------------
    def update_versioned(self, draft_id: int, expected_version: int, values: dict[str, Any]) -> bool:
        """Apply ``values`` and bump the version only if the draft is still current and at ``expected_version``."""
        stmt = (
            update(Draft)
            .where(Draft.id == draft_id, Draft.version == expected_version, Draft.is_current.is_(True))
            .values(version=Draft.version + 1, **values)
            # Queued events touch no draft, so there is no need to flush them first.
            .execution_options(synchronize_session=False, autoflush=False)
        )
        return rowcount(self.session.execute(stmt)) == 1

    def update_many(self, expected: Sequence[tuple[int, int]], values: dict[str, Any]) -> set[int]:
        """Like update_versioned for many (id, version) pairs in one statement; returns the ids updated."""
        if not expected:
            return set()
        stmt = (
            update(Draft)
            .where(tuple_(Draft.id, Draft.version).in_(list(expected)), Draft.is_current.is_(True))
            .values(version=Draft.version + 1, **values)
            .returning(Draft.id)
            .execution_options(synchronize_session=False)
        )
        return set(self.session.scalars(stmt))

    def add_events(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self.session.execute(insert(ReviewEvent), list(rows))

    def add_event(self, **values: Any) -> None:
        """Queued in this transaction; written with the next flush (batched with its neighbours)."""
        self.session.add(ReviewEvent(**values))

    # -- query building --------------------------------------------------------------------------
    def _rows_stmt(self, flt: DraftFilter, exclude: Sequence[int] = ()) -> Select[Draft, Record, str]:
        stmt = (
            select(Draft, Record, Dataset.name)
            .join(Record, Record.id == Draft.record_id)
            .join(Dataset, Dataset.id == Record.dataset_id)
        )
        for clause in self._clauses(flt):
            stmt = stmt.where(clause)
        if exclude:
            stmt = stmt.where(Draft.id.not_in(list(exclude)))
        return stmt.order_by(Draft.id)

    def _clauses(self, flt: DraftFilter) -> Iterator[ColumnElement[bool]]:
        for name, column in _EQUALS.items():
            if getattr(flt, name) is not None:
                yield column == getattr(flt, name)
        if flt.ids is not None:
            yield Draft.id.in_(flt.ids)
        if flt.after_id is not None:
            yield Draft.id > flt.after_id
        if flt.score_min is not None or flt.score_max is not None:
            yield self._scored(flt.score_min, flt.score_max)
        if flt.current_only:
            yield Draft.is_current.is_(True)
        if flt.flag is not None:
            yield self._has_flag(flt.flag)
        if flt.no_flags:
            yield self._flag_count() == 0

    def _scored(self, low: float | None, high: float | None) -> ColumnElement[bool]:
        found: Select[Any] = select(literal_column("1")).where(Judgement.draft_id == Draft.id, Judgement.overall.is_not(None))
        if low is not None:
            found = found.where(Judgement.overall >= low)
        if high is not None:
            found = found.where(Judgement.overall <= high)
        return exists(found)

    def _postgres(self) -> bool:
        return self.session.get_bind().dialect.name == "postgresql"

    def _has_flag(self, name: str) -> ColumnElement[bool]:
        if self._postgres():
            return type_coerce(Draft.flags, JSONB).contains([name])
        each = func.json_each(Draft.flags).table_valued("value")
        return exists(select(literal_column("1")).select_from(each).where(each.c.value == name))

    def _flag_count(self) -> ColumnElement[int]:
        fn = func.jsonb_array_length if self._postgres() else func.json_array_length
        return func.coalesce(fn(Draft.flags), 0)

"""Provider batch jobs and their request lines (issue 14): what was sent where, and what came back."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, update

from storage.models import ProviderJob, ProviderRequest
from storage.repositories.base import Repository

OPEN_JOB = ("collecting", "new", "uploaded", "submitted")  # collecting: retries gathering for the next job
OPEN_REQUEST = ("sent", "retry")


class ProviderJobRepository(Repository):
    def add_job(self, **values: Any) -> ProviderJob:
        job = ProviderJob(**values)
        self.session.add(job)
        self.session.flush()
        return job

    def add_requests(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.session.bulk_insert_mappings(ProviderRequest, rows)

    def get(self, job_id: int) -> ProviderJob | None:
        return self.session.get(ProviderJob, job_id)

    def lock(self, job_id: int) -> ProviderJob | None:
        """This job, locked for one poller; None when another holds it (PostgreSQL) or it is gone."""
        stmt = select(ProviderJob).where(ProviderJob.id == job_id).with_for_update(skip_locked=True)
        return self.session.scalars(stmt).first()

    def for_batch(self, batch_id: int) -> Sequence[ProviderJob]:
        return self.session.scalars(select(ProviderJob).where(ProviderJob.batch_id == batch_id)
                                    .order_by(ProviderJob.id)).all()

    def due(self, now: datetime, batch_id: int | None = None) -> list[int]:
        """Jobs with a step to take now: not yet sent, or submitted and due for a poll."""
        stmt = select(ProviderJob.id).where(or_(
            ProviderJob.state.in_(("new", "uploaded")),
            (ProviderJob.state == "submitted") & or_(ProviderJob.next_poll_at.is_(None),
                                                      ProviderJob.next_poll_at <= now)))
        if batch_id is not None:
            stmt = stmt.where(ProviderJob.batch_id == batch_id)
        return list(self.session.scalars(stmt.order_by(ProviderJob.id)))

    def collector(self, batch_id: int) -> ProviderJob | None:
        stmt = select(ProviderJob).where(ProviderJob.batch_id == batch_id, ProviderJob.state == "collecting")
        return self.session.scalars(stmt).first()

    def open_count(self, batch_id: int) -> int:
        stmt = select(func.count()).select_from(ProviderJob).where(ProviderJob.batch_id == batch_id,
                                                                  ProviderJob.state.in_(OPEN_JOB))
        return int(self.session.scalar(stmt) or 0)

    def batches_with_jobs(self, batch_ids: Iterable[int]) -> set[int]:
        ids = list(batch_ids)
        if not ids:
            return set()
        return set(self.session.scalars(select(ProviderJob.batch_id).where(ProviderJob.batch_id.in_(ids))))

    # -- requests ----------------------------------------------------------------------------------------------
    def requests_of(self, job_id: int, states: Iterable[str] | None = None) -> Sequence[ProviderRequest]:
        stmt = select(ProviderRequest).where(ProviderRequest.job_id == job_id)
        if states is not None:
            stmt = stmt.where(ProviderRequest.state.in_(list(states)))
        return self.session.scalars(stmt.order_by(ProviderRequest.id)).all()

    def by_custom_ids(self, custom_ids: list[str]) -> dict[str, ProviderRequest]:
        stmt = select(ProviderRequest).where(ProviderRequest.custom_id.in_(custom_ids)).with_for_update()
        return {r.custom_id: r for r in self.session.scalars(stmt)}

    def tokens_of(self, batch_id: int, items: list[int], *, by_draft: bool = False) -> dict[int, tuple[int, int]]:
        """Tokens paid per item (record, or draft for the judge) over all its requests: retries and repairs too."""
        column = ProviderRequest.draft_id if by_draft else ProviderRequest.record_id
        stmt = (select(column, func.sum(ProviderRequest.prompt_tokens), func.sum(ProviderRequest.completion_tokens))
                .where(ProviderRequest.batch_id == batch_id, column.in_(items)).group_by(column))
        return {r: (int(p or 0), int(c or 0)) for r, p, c in self.session.execute(stmt) if r is not None}

    def followers(self, batch_id: int, keys: set[str], *, by_draft: bool = False) -> dict[int, str]:
        """Items waiting for the result of the request sent under one of these cache keys: item -> key."""
        if not keys:
            return {}
        column = ProviderRequest.draft_id if by_draft else ProviderRequest.record_id
        stmt = select(column, ProviderRequest.cache_key).where(
            ProviderRequest.batch_id == batch_id, ProviderRequest.state == "follower",
            ProviderRequest.cache_key.in_(list(keys)))
        return {r: k for r, k in self.session.execute(stmt) if r is not None}

    def followers_done(self, batch_id: int, items: list[int], *, by_draft: bool = False) -> None:
        column = ProviderRequest.draft_id if by_draft else ProviderRequest.record_id
        self._run(update(ProviderRequest).where(ProviderRequest.batch_id == batch_id, column.in_(items),
                                                ProviderRequest.state == "follower").values(state="done"))

    def in_state(self, batch_id: int, states: Iterable[str]) -> Sequence[ProviderRequest]:
        stmt = select(ProviderRequest).where(ProviderRequest.batch_id == batch_id,
                                             ProviderRequest.state.in_(list(states)))
        return self.session.scalars(stmt.order_by(ProviderRequest.id)).all()

    def open_requests(self, batch_id: int) -> int:
        stmt = select(func.count()).select_from(ProviderRequest).where(
            ProviderRequest.batch_id == batch_id, ProviderRequest.state.in_(OPEN_REQUEST))
        return int(self.session.scalar(stmt) or 0)

    def set_state(self, job_id: int, from_states: Iterable[str], state: str, error: str | None,
                  now: datetime) -> int:
        stmt = (update(ProviderRequest).where(ProviderRequest.job_id == job_id,
                                              ProviderRequest.state.in_(list(from_states)))
                .values(state=state, error=error, finished_at=now))
        return self._run(stmt).rowcount

    def request_counts(self, batch_id: int) -> dict[str, int]:
        stmt = (select(ProviderRequest.state, func.count()).where(ProviderRequest.batch_id == batch_id)
                .group_by(ProviderRequest.state))
        return {s: int(n) for s, n in self.session.execute(stmt)}

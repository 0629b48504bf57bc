"""Worker heartbeats: who is alive, what each is working on, how much it has done."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update

from storage.models import WorkerHeartbeat
from storage.repositories.base import Repository


class WorkerRepository(Repository):
    def beat(self, hostname: str, now: datetime, **values: Any) -> None:
        row = self.session.get(WorkerHeartbeat, hostname)
        if row is None:
            row = WorkerHeartbeat(hostname=hostname, started_at=now, records_processed=0)
            self.session.add(row)
        for name, value in values.items():
            setattr(row, name, value)
        row.last_seen = now

    def progress(self, hostname: str, chunk_id: int | None, records: int, now: datetime) -> None:
        stmt = (update(WorkerHeartbeat).where(WorkerHeartbeat.hostname == hostname)
                .values(current_chunk_id=chunk_id, last_seen=now,
                        records_processed=WorkerHeartbeat.records_processed + records))
        self._run(stmt)

    def forget(self, hostname: str) -> None:
        self.session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.hostname == hostname))

    def all(self) -> Sequence[WorkerHeartbeat]:
        return self.session.scalars(select(WorkerHeartbeat).order_by(WorkerHeartbeat.hostname)).all()

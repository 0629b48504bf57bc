"""What every repository shares: a session, and conditional statements that skip ORM synchronisation."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, Result
from sqlalchemy.orm import Session
from sqlalchemy.sql import Executable


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE/DELETE matched. ``Session.execute`` is typed as returning ``Result``; for DML it is a
    ``CursorResult``, which has the count."""
    return cast(CursorResult[Any], result).rowcount


class Repository:
    def __init__(self, session: Session):
        self.session = session

    def _run(self, stmt: Executable) -> CursorResult[Any]:
        # Conditional UPDATEs decide in the database; no need to mirror them onto loaded objects (SQLite's naive
        # datetimes would not even compare with ours).
        return cast(CursorResult[Any], self.session.execute(stmt, execution_options={"synchronize_session": False}))

"""What every repository shares: a session, and conditional statements that skip ORM synchronisation."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session


class Repository:
    def __init__(self, session: Session):
        self.session = session

    def _run(self, stmt: Any) -> Any:
        # Conditional UPDATEs decide in the database; no need to mirror them onto loaded objects (SQLite's naive
        # datetimes would not even compare with ours).
        return self.session.execute(stmt, execution_options={"synchronize_session": False})

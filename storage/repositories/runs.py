"""Repository for runs (filled in by its stage)."""

from __future__ import annotations

from sqlalchemy.orm import Session


class RunRepository:
    def __init__(self, session: Session):
        self.session = session

"""Repository for reviews (filled in by its stage)."""

from __future__ import annotations

from sqlalchemy.orm import Session


class ReviewRepository:
    def __init__(self, session: Session):
        self.session = session

"""Unit of work: one session, the repositories over it, and explicit commits.

Nothing is committed unless ``commit()`` is called; leaving the block rolls back what is left.
"""

from __future__ import annotations

from importlib import import_module
from types import TracebackType
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

# name -> "module:Class". Each stage owns one repository module.
REPOSITORIES = {
    "records": "storage.repositories.records:RecordRepository",
    "drafts": "storage.repositories.drafts:DraftRepository",
    "batches": "storage.repositories.batches:BatchRepository",
    "reviews": "storage.repositories.reviews:ReviewRepository",
    "builds": "storage.repositories.builds:BuildRepository",
    "runs": "storage.repositories.runs:RunRepository",
}


def _load(path: str) -> type:
    module, _, name = path.partition(":")
    return getattr(import_module(module), name)


class UnitOfWork:
    def __init__(self, session_factory: sessionmaker[Session]):
        self._factory = session_factory
        self.session: Session | None = None
        self._repos: dict[str, Any] = {}

    def __enter__(self) -> "UnitOfWork":
        self.session = self._factory()
        self._repos = {}
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        assert self.session is not None
        self.session.rollback()
        self.session.close()
        self.session = None

    def __getattr__(self, name: str) -> Any:
        # Repositories are built on first use so a stage only imports what it touches.
        if name not in REPOSITORIES:
            raise AttributeError(name)
        if self.session is None:
            raise RuntimeError("UnitOfWork used outside its 'with' block")
        if name not in self._repos:
            self._repos[name] = _load(REPOSITORIES[name])(self.session)
        return self._repos[name]

    def commit(self) -> None:
        assert self.session is not None
        self.session.commit()

    def rollback(self) -> None:
        assert self.session is not None
        self.session.rollback()

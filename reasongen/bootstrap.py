"""The one wiring function: settings in, engine + unit-of-work factory out.

Entry points (CLI commands, Celery worker start-up, benches) call :func:`bootstrap`; nothing else
creates engines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine

from reasongen.settings import Settings
from storage.db import make_engine, make_session_factory
from storage.migrate import ensure_schema
from storage.uow import UnitOfWork


@dataclass
class Wiring:
    settings: Settings
    engine: Engine
    uow: Callable[[], UnitOfWork]

    def close(self) -> None:
        self.engine.dispose()


def bootstrap(settings: Settings, *, check_schema: bool = True) -> Wiring:
    engine = make_engine(settings.database_url)
    if check_schema:
        ensure_schema(engine)
    factory = make_session_factory(engine)
    return Wiring(settings=settings, engine=engine, uow=lambda: UnitOfWork(factory))

"""Real PostgreSQL and Redis for tests: fresh databases per test, cloned from a migrated template."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

PG_ADMIN_URL = os.environ.get("REASONGEN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("REASONGEN_TEST_REDIS", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() == "true"


def unavailable(what: str, exc: Exception) -> None:
    """In CI a missing service fails the run; on a laptop it skips the test."""
    message = f"{what} is not reachable ({exc}); start it (see README) to run this test"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def pg_connect(dbname: str = "postgres"):  # type: ignore[no-untyped-def]
    import psycopg

    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{dbname}"
    return psycopg.connect(url, autocommit=True, connect_timeout=5)


def pg_url(dbname: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{dbname}"


class PgDatabases:
    """Creates a migrated template once per session, then cheap per-test copies of it."""

    def __init__(self) -> None:
        self.prefix = f"rgt_{uuid.uuid4().hex[:8]}"
        self.template = f"{self.prefix}_tpl"
        self.created: list[str] = []

    def setup(self) -> None:
        from storage.migrate import upgrade

        with pg_connect() as conn:
            conn.execute(f'CREATE DATABASE "{self.template}"')
        self.created.append(self.template)
        upgrade(pg_url(self.template))

    def new(self) -> str:
        name = f"{self.prefix}_{uuid.uuid4().hex[:8]}"
        with pg_connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        self.created.append(name)
        return pg_url(name)

    def drop_all(self) -> None:
        with pg_connect() as conn:
            for name in reversed(self.created):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class SqliteDatabases:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.template = folder / "template.db"

    def setup(self) -> None:
        from storage.migrate import upgrade

        upgrade(f"sqlite:///{self.template}")

    def new(self) -> str:
        path = self.folder / f"{uuid.uuid4().hex[:8]}.db"
        shutil.copyfile(self.template, path)
        return f"sqlite:///{path}"

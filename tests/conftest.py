"""Shared fixtures. Storage tests run on SQLite and on a real PostgreSQL (the `db_url` fixture)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reasongen.bootstrap import Wiring, bootstrap
from reasongen.settings import Settings
from tests.services import REDIS_URL, PgDatabases, SqliteDatabases, unavailable


@pytest.fixture(scope="session")
def _pg_databases() -> Iterator[PgDatabases | Exception]:
    dbs = PgDatabases()
    try:
        dbs.setup()
    except Exception as exc:  # noqa: BLE001 - reported per test by unavailable()
        yield exc
        return
    yield dbs
    dbs.drop_all()


@pytest.fixture(scope="session")
def _sqlite_databases(tmp_path_factory: pytest.TempPathFactory) -> SqliteDatabases:
    dbs = SqliteDatabases(tmp_path_factory.mktemp("sqlite"))
    dbs.setup()
    return dbs


@pytest.fixture
def pg_url(_pg_databases: PgDatabases | Exception) -> str:
    """A fresh, migrated PostgreSQL database for this test."""
    if isinstance(_pg_databases, Exception):
        unavailable("PostgreSQL", _pg_databases)
    return _pg_databases.new()  # type: ignore[union-attr]


@pytest.fixture
def sqlite_url(_sqlite_databases: SqliteDatabases) -> str:
    return _sqlite_databases.new()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Every storage test runs on both backends."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture
def settings(db_url: str, tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    return Settings(database_url=db_url, broker_url=None, templates_dir=None)


@pytest.fixture
def wired(settings: Settings) -> Iterator[Wiring]:
    w = bootstrap(settings)
    yield w
    w.close()


@pytest.fixture
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except Exception as exc:  # noqa: BLE001
        unavailable("Redis", exc)
    return REDIS_URL

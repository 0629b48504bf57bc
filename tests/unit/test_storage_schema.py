import pytest
from sqlalchemy import inspect

from reasongen.bootstrap import bootstrap
from reasongen.settings import Settings
from storage.migrate import SchemaMissingError, upgrade


def test_migrations_create_every_table(db_url):
    from storage.db import make_engine
    from storage.models import Base

    engine = make_engine(db_url)
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_missing_schema_says_how_to_create_it(tmp_path):
    with pytest.raises(SchemaMissingError, match="reasongen db upgrade"):
        bootstrap(Settings(database_url=f"sqlite:///{tmp_path / 'empty.db'}"))


def test_upgrade_is_idempotent(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    upgrade(url)
    upgrade(url)
    bootstrap(Settings(database_url=url)).close()


def test_migrations_match_the_models_exactly(db_url):
    # A column added to models.py without a migration (or the reverse) shows up here on either database.
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from storage.db import make_engine
    from storage.models import Base

    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()

"""Storage: tables, migrations, repositories behind a unit of work, and ingest.

Nothing here connects at import time: engines are made by :func:`storage.db.make_engine` at entry points.
"""

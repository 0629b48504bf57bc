"""The job queue: batches of chunks in the database, Celery tasks carrying chunk ids, leases, the sweeper.

PostgreSQL is the source of truth; the broker is only transport. Without a broker the same chunk code runs
in-process (see :mod:`workers.inprocess`).
"""

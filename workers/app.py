"""The Celery app, built from Settings by a function. Building it opens no connection.

The settings below are what make at-least-once delivery safe together with the leases in the database:
late acks and reject-on-worker-lost put a chunk whose worker died back on the queue, prefetch 1 keeps a worker
from hoarding chunks, and the visibility timeout (one value for the broker and the result backend) outlasts
the chunk's hard time limit so Redis never redelivers a chunk that is still running normally.

Celery enforces time limits only in the prefork pool; teacher workers run chunks in threads, so there the
lease is the time limit that counts: a chunk that stops renewing it is handed on by the sweeper, and the
stuck attempt cannot commit anything after that (see workers/fence.py).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from reasongen.settings import Settings, is_redis_url

QUEUE_KINDS = ("teacher", "gpu", "train")
CHUNK_TASK = "reasongen.run_chunk"
FOLLOWUP_TASK = "reasongen.followup"
TRAIN_TASK = "reasongen.train_run"
SOFT_LIMIT_MARGIN_S = 30


def queue_name(settings: Settings, kind: str) -> str:
    return f"{settings.queue_prefix}{kind}"


def queue_for_backend(settings: Settings, backend: str) -> str:
    """Local models need the GPU worker; everything else talks to a server (or is fake) and goes to teacher."""
    return queue_name(settings, "gpu" if backend == "local" else "teacher")


def celery_config(settings: Settings) -> dict[str, Any]:
    limit = settings.chunk_time_limit_s
    if settings.visibility_timeout_s <= limit:
        raise ValueError(f"REASONGEN_VISIBILITY_TIMEOUT ({settings.visibility_timeout_s}s) must be longer than "
                         f"REASONGEN_CHUNK_TIME_LIMIT ({limit}s), or running chunks would be redelivered")
    transport = {"visibility_timeout": settings.visibility_timeout_s}
    redis = is_redis_url(settings.broker_url)
    return dict(
        broker_url=settings.broker_url,
        result_backend=settings.broker_url if redis else None,
        task_ignore_result=True,  # results live in PostgreSQL; the backend is only configured consistently
        broker_transport_options=dict(transport),
        result_backend_transport_options=dict(transport),
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=limit,
        task_soft_time_limit=max(1, limit - SOFT_LIMIT_MARGIN_S),
        task_serializer="json",
        accept_content=["json"],
        worker_send_task_events=True,  # Flower works
        task_send_sent_event=True,
        task_default_queue=queue_name(settings, "teacher"),
        task_routes={FOLLOWUP_TASK: {"queue": queue_name(settings, "train")},
                     TRAIN_TASK: {"queue": queue_name(settings, "train")}},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        imports=list(settings.worker_imports),
    )


def create_app(settings: Settings) -> Celery:
    if not settings.broker_url:
        raise RuntimeError("No broker configured: set REASONGEN_BROKER_URL (e.g. redis://127.0.0.1:6379/0)")
    app = Celery("reasongen", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


REQUEST_LOGGERS = ("httpx", "httpx2", "httpcore", "openai", "aiohttp.client")  # httpx2: the SDK's transport


class RequestsAtDebug(logging.Filter):
    """HTTP clients log every request at INFO (thousands of lines per worker): a worker logs chunks at INFO and
    requests at DEBUG, so they show with ``--loglevel DEBUG`` only."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return record.levelno > logging.DEBUG or logging.getLogger().isEnabledFor(logging.DEBUG)


def quiet_request_logs() -> None:
    for name in REQUEST_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RequestsAtDebug) for f in logger.filters):
            logger.addFilter(RequestsAtDebug())


def worker_app(settings: Settings) -> Celery:
    """The app a worker runs: the tasks registered and the worker's signal handlers connected."""
    import workers.tasks  # noqa: F401 - registers the shared tasks
    from workers import lifecycle
    from workers.broker_close import tolerate_lost_connection_on_close

    quiet_request_logs()
    tolerate_lost_connection_on_close()  # a broker restart must not stop the worker (kombu, see the module)
    app = create_app(settings)
    lifecycle.install(settings)
    return app


def pool_for(queues: list[str], concurrency: int | None, settings: Settings | None = None) -> tuple[str, int]:
    """gpu and train run one task at a time in the worker process itself (solo: no fork, so CUDA is only
    ever touched in the process that uses it); teacher runs chunks in threads, asyncio inside each: by default as
    many as an in-process run gives its teacher (``teacher_threads``)."""
    unknown = [q for q in queues if q not in QUEUE_KINDS]
    if unknown or not queues:
        raise ValueError(f"Unknown queue(s) {', '.join(unknown) or '(none)'}; choose from: {', '.join(QUEUE_KINDS)}")
    if {"gpu", "train"} & set(queues):
        if concurrency not in (None, 1):
            raise ValueError("gpu and train workers run one task at a time (solo pool); drop --concurrency")
        return "solo", 1
    return "threads", concurrency or teacher_threads(settings or Settings())


def teacher_threads(settings: Settings) -> int:
    """Chunks a teacher worker runs at once: the in-process lanes for the configured teacher and chunk size, so
    chunks doing database work, or waiting on a straggler, leave others to keep the backend's slots full (a
    fixed 4 left them a third empty under faults). The database pool bounds it too (workers/inprocess.py,
    ``MAX_LANES``): threads waiting at the gate or on replies hold no connection."""
    from generation.feed import gate_capacity
    from generation.run import SUBMIT_SUB_BATCH
    from workers.inprocess import lanes_for_capacity  # the worker's sizing is the in-process one, in one place

    sub_batch = min(settings.chunk_size, SUBMIT_SUB_BATCH)
    return lanes_for_capacity(gate_capacity(settings.teacher_concurrency, sub_batch), settings.chunk_size)

"""Worker start-up and shutdown: per-process runtime, heartbeats, and the sweeper thread.

The main worker process runs one maintenance thread: it writes this worker's heartbeat row (so `reasongen
workers` needs no Flower) and runs a sweep every ``sweep_interval_s``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from celery import signals

from reasongen.settings import Settings
from workers import runtime, sweeper
from workers.batches import utcnow

log = logging.getLogger(__name__)
_stop = threading.Event()
_installed: list[Any] = []


def install(settings: Settings) -> None:
    runtime.configure(settings)
    if not _installed:  # signal handlers are global: connect them once
        _installed.extend([_on_child_start, _on_ready, _on_shutdown])
        signals.worker_process_init.connect(_on_child_start, weak=False)
        signals.worker_ready.connect(_on_ready, weak=False)
        signals.worker_shutdown.connect(_on_shutdown, weak=False)


def _on_child_start(**_: Any) -> None:
    runtime.current().after_fork()


def _on_ready(sender: Any = None, **_: Any) -> None:
    from workers import dispatch

    rt = runtime.current()
    dispatch.use_app(rt.settings, sender.app)
    info = dict(hostname=sender.hostname, pid=os.getpid(), queues=_queues(sender),
                concurrency=int(getattr(sender.controller, "concurrency", 1) or 1))
    threading.Thread(target=_maintain, args=(info,), name="reasongen-maintenance", daemon=True).start()


def _on_shutdown(sender: Any = None, **_: Any) -> None:
    _stop.set()
    hostname = getattr(sender, "hostname", None)
    if hostname:
        try:
            with runtime.current().wiring().uow() as uow:
                uow.heartbeats.forget(hostname)
                uow.commit()
        except Exception:  # noqa: BLE001 - shutting down; the row just goes stale
            log.warning("could not remove heartbeat of %s", hostname)


def _queues(consumer: Any) -> list[str]:
    try:
        return sorted(q.name for q in consumer.task_consumer.queues)
    except AttributeError:
        return []


def _maintain(info: dict[str, Any]) -> None:
    rt = runtime.current()
    next_sweep = time.monotonic() + rt.settings.sweep_interval_s
    while not _stop.is_set():
        _safely(_beat, rt, info)
        if time.monotonic() >= next_sweep:
            _safely(sweeper.sweep, rt.wiring())
            next_sweep = time.monotonic() + rt.settings.sweep_interval_s
        _stop.wait(min(rt.settings.heartbeat_interval_s, rt.settings.sweep_interval_s))


def _beat(rt: runtime.Runtime, info: dict[str, Any]) -> None:
    with rt.wiring().uow() as uow:
        uow.heartbeats.beat(info["hostname"], utcnow(), queues=info["queues"], pid=info["pid"],
                         concurrency=info["concurrency"], counters=rt.backends.counters())
        uow.commit()


def _safely(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 - a database blip must not kill the maintenance thread
        log.exception("maintenance step %s failed", getattr(fn, "__name__", fn))

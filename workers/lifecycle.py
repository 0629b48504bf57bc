"""Worker start-up and shutdown: per-process runtime, heartbeats, and the sweeper thread.

The main worker process runs two maintenance threads. The heartbeat thread writes this worker's heartbeat row
every ``heartbeat_interval_s`` (so `reasongen workers` needs no Flower, and the sweepers can tell this worker
is alive); it has a thread of its own so that a slow sweep can never make a live worker look dead. The sweep
thread sweeps once at start-up (a worker restarted after a crash hands its old leases on at once, instead of
after a sweep interval), then every ``sweep_interval_s``, and at once when a third thread, looking every
``BROKER_CHECK_S``, finds that the broker lost its data (Redis restarted empty): the messages it held are
re-sent within a second or so, not a sweep.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from celery import signals

from reasongen.settings import Settings
from workers import broker, runtime, sweeper
from workers.batches import utcnow

log = logging.getLogger(__name__)
_stop = threading.Event()
_sweep_now = threading.Event()  # the heartbeat asks for a sweep before the interval is over
_broker_lost = threading.Event()
_installed: list[Any] = []
# How often a worker looks whether the broker lost its data (one SET NX on Redis). Until it does, the chunks the
# broker lost wait, and the workers run dry as their current chunks end (bench/chaos: a Redis restart looked at
# only with the heartbeat, every 10 s, cost ~5 s of nearly idle workers).
BROKER_CHECK_S = 1.0


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
    warm_up(info["queues"], rt.settings.queue_prefix)  # before the first task: the event loop starts after this
    threading.Thread(target=_maintain, args=(info,), name="reasongen-maintenance", daemon=True).start()


def _on_shutdown(sender: Any = None, **_: Any) -> None:
    _stop.set()
    _sweep_now.set()
    hostname = getattr(sender, "hostname", None)
    if hostname:
        try:
            with runtime.current().wiring().uow() as uow:
                uow.heartbeats.forget(hostname)
                uow.commit()
        except Exception:  # noqa: BLE001 - shutting down; the row just goes stale
            log.warning("could not remove heartbeat of %s", hostname)


def warm_up(queues: list[str], prefix: str = "") -> None:
    """Load what the first drafts would load lazily, before taking any task. The language check's detector
    takes a second or more of CPU to build; built inside the first chunk it starved the teacher's event loop,
    and answers already received timed out on the client and were asked (and paid) again (chaos bench: three
    paid duplicates seconds after a worker restarted)."""
    if not any(q.removeprefix(prefix) in ("teacher", "gpu") for q in queues):
        return
    from storage.ingest.langid import detector

    detector().detect_language_of("A sentence in English, to load the language models now.")


def _queues(consumer: Any) -> list[str]:
    try:
        return sorted(q.name for q in consumer.task_consumer.queues)
    except AttributeError:
        return []


def _maintain(info: dict[str, Any]) -> None:
    rt = runtime.current()
    _safely(_beat, rt, info)  # first: the sweep below must see this process's pid in the row
    threading.Thread(target=_keep_beating, args=(rt, info), name="reasongen-heartbeat", daemon=True).start()
    if rt.settings.broker_url and broker.is_redis(rt.settings):
        threading.Thread(target=_watch_broker, args=(rt,), name="reasongen-broker-watch", daemon=True).start()
    while not _stop.is_set():
        lost = _broker_lost.is_set()
        _broker_lost.clear()
        _safely(_sweep, rt, lost)
        _sweep_now.wait(rt.settings.sweep_interval_s)
        _sweep_now.clear()


def _sweep(rt: runtime.Runtime, broker_lost: bool) -> None:
    sweeper.sweep(rt.wiring(), broker_lost=broker_lost)


def _keep_beating(rt: runtime.Runtime, info: dict[str, Any]) -> None:
    while not _stop.wait(rt.settings.heartbeat_interval_s):
        _safely(_beat, rt, info)


def _watch_broker(rt: runtime.Runtime) -> None:
    while not _stop.wait(BROKER_CHECK_S):
        _check_broker(rt)


def _check_broker(rt: runtime.Runtime) -> None:
    """One SET NX: the broker lost its data (workers/broker.py) -> sweep now, re-sending. A broker that does not
    answer yet (restarting) is looked at again next time, quietly: Celery's consumer reports it already."""
    try:
        lost = broker.data_lost(rt.settings)
    except Exception as exc:  # noqa: BLE001 - a thread that must outlive any broker or bug
        if not broker.unreachable(exc):
            log.exception("checking the broker failed")
        return
    if lost:
        log.warning("the broker lost its data (restarted empty?): re-sending the queued chunks now")
        _broker_lost.set()
        _sweep_now.set()


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

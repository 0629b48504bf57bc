"""A lease heartbeat: a thread that keeps a lease alive while the work holding it is alive.

Renewal no longer waits for a sub-batch to finish, so a chunk waiting on a slow server (or on the shared rate
limiter) keeps its lease. A worker that dies takes the thread with it, so its lease still runs out on time; a
live but hung one stops renewing after ``max_s`` (the chunk time limit), so it cannot hold a lease for ever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, renew: Callable[[], bool], interval_s: float, max_s: float | None = None,
                 name: str = "lease-heartbeat"):
        self._renew, self._interval, self._max_s, self._name = renew, interval_s, max_s, name
        self._stop = threading.Event()
        self.lost = threading.Event()  # set when a renewal found the lease taken: the holder must stop
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "Heartbeat":
        self._thread = threading.Thread(target=self._beat, name=self._name, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _beat(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(self._interval):
            if self._max_s is not None and time.monotonic() - started > self._max_s:
                log.warning("%s: held longer than %ss; no longer renewing", self._name, self._max_s)
                return
            try:
                if not self._renew():
                    self.lost.set()
                    return
            except Exception:  # noqa: BLE001 - a database blip: try again next beat (the lease has slack)
                log.warning("%s: renewal failed; retrying", self._name, exc_info=True)

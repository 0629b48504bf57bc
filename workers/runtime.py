"""What one worker process holds: its settings, its own database engine, its backends.

Prefork children must not use the engine of the parent they were forked from, so the wiring is per pid.
"""

from __future__ import annotations

import os
import threading

from reasongen.bootstrap import Wiring, bootstrap
from reasongen.settings import Settings, load_settings
from workers.chunks import BackendSource


class Runtime:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.backends = BackendSource(settings)
        self._wiring: Wiring | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def wiring(self) -> Wiring:
        with self._lock:
            if self._wiring is None or self._pid != os.getpid():
                self._wiring = bootstrap(self.settings, check_schema=False)
                self._pid = os.getpid()
            return self._wiring

    def after_fork(self) -> None:
        """In a forked child: drop the parent's pool without closing its sockets (they are the parent's)."""
        if self._wiring is not None and self._pid != os.getpid():
            self._wiring.engine.dispose(close=False)
            self._wiring = None
        self.backends = BackendSource(self.settings)


_current: Runtime | None = None


def configure(settings: Settings) -> Runtime:
    global _current
    _current = Runtime(settings)
    return _current


def current() -> Runtime:
    return _current or configure(load_settings())

"""What a chunk tells its batch about the teacher endpoint, and when it pauses the batch.

At every sub-batch boundary (and when the chunk ends) the worker records on the batch the mode the requests
really ran in and the teacher's throttle (the adaptive concurrency limit and the pace), and asks the backend's
circuit breaker about this batch's circuit: when it is open, the batch is paused with the breaker's reason
(the server's own message) as its status reason, so ``status`` shows it, the command exits non-zero, and
``reasongen resume`` continues once the server is fixed. Backends without a breaker or a limiter (fake, local)
record nothing.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

from generation import breaker

log = logging.getLogger(__name__)

PAUSED = "paused"


def snapshot(backend: Any) -> dict[str, Any]:
    """The batch columns this backend can fill now (empty for backends without an endpoint)."""
    values: dict[str, Any] = {}
    if hasattr(backend, "mode_report"):
        values["response_mode"] = backend.mode_report()
    state = backend.concurrency_state() if hasattr(backend, "concurrency_state") else None
    if state is not None:
        values["concurrency_limit"] = state.limit
        describe = getattr(state, "describe", None)
        values["concurrency_reason"] = (describe() if describe else f"{state.phase}: {state.reason}")[:500]
    return values


class _Written:
    """What this process last wrote on each batch: a chunk records at every sub-batch boundary, and a transaction
    that writes what the row already says costs a lane about 4 ms of interpreter time (a fifth of a chunk's
    bookkeeping) for nothing. Only endpoint_state writes these columns, so an equal snapshot is already there.
    Kept per unit-of-work factory (one per database wiring: batch ids of two databases are unrelated)."""

    KEEP = 256  # batches remembered per wiring (the oldest is forgotten first: that only costs one more write)

    def __init__(self) -> None:
        self._last: weakref.WeakKeyDictionary[Any, dict[int, dict[str, Any]]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def same(self, where: Any, batch_id: int, values: dict[str, Any]) -> bool:
        with self._lock:
            return self._last.get(where, {}).get(batch_id) == values

    def wrote(self, where: Any, batch_id: int, values: dict[str, Any]) -> None:
        with self._lock:
            last = self._last.setdefault(where, {})
            last.pop(batch_id, None)
            last[batch_id] = values
            while len(last) > self.KEEP:
                del last[next(iter(last))]


_WRITTEN = _Written()


def record(uow_factory: Callable[[], Any], batch_id: int, backend: Any) -> None:
    values = snapshot(backend)
    if not values or _WRITTEN.same(uow_factory, batch_id, values):
        return
    with uow_factory() as uow:
        batch = uow.batches.get(batch_id)
        for name, value in values.items():
            setattr(batch, name, value)
        uow.commit()
    _WRITTEN.wrote(uow_factory, batch_id, values)


def check(uow_factory: Callable[[], Any], batch_id: int, backend: Any,
          pause: Callable[..., Any]) -> bool:
    """Record the endpoint state; pause the batch and return True when the breaker is open."""
    try:
        record(uow_factory, batch_id, backend)
    except Exception:  # noqa: BLE001 - a display column must never stop a chunk
        log.warning("could not record the teacher state of batch %s", batch_id, exc_info=True)
    reason = breaker.pause_reason(backend, batch_id)
    if reason is None:
        return False
    log.warning("batch %s paused: %s", batch_id, reason)
    pause(batch_id, reason=f"{reason}; fix the server, then run: reasongen resume {batch_id}")
    return True


def watching(uow_factory: Callable[[], Any], batch_id: int, backend: Any, should_stop: Callable[[], bool],
             pause: Callable[..., Any]) -> Callable[[], bool]:
    """``should_stop`` for a chunk: the endpoint check first (it may pause the batch), then the guard's own."""
    breaker.reset(backend, batch_id)  # the chunk runs because its batch is running again: a resumed batch starts closed

    def stop() -> bool:
        return check(uow_factory, batch_id, backend, pause) or should_stop()

    return stop

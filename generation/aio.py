"""A private event loop on a daemon thread, so sync callers (Celery tasks, the CLI) can drive async code.

The loop outlives each call, so HTTP clients created on it keep their pooled keep-alive connections
from one sub-batch to the next instead of reconnecting every time.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()
    loop.close()


class LoopThread:
    def __init__(self, name: str = "reasongen-loop"):
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = os.getpid()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.submit(coro).result()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self._ensure())

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._pid != os.getpid():  # forked (a prefork worker): the parent's loop thread does not exist here
                self._loop, self._pid = None, os.getpid()
            if self._loop is None or self._loop.is_closed():
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=_serve, args=(self._loop,), name=self._name, daemon=True)
                self._thread.start()
            return self._loop

    def close(self, final: Coroutine[Any, Any, Any] | None = None) -> None:
        """Run ``final`` (e.g. closing clients) on the loop, then stop it."""
        with self._lock:
            loop, self._loop = self._loop, None
            if self._pid != os.getpid():  # the parent's loop: nothing runs it in this process
                loop = None
        if loop is None:
            if final is not None:
                final.close()
            return
        if final is not None:
            done = asyncio.run_coroutine_threadsafe(final, loop)
            if threading.current_thread() is not self._thread:  # waiting on our own thread would deadlock
                done.result(30)
        loop.call_soon_threadsafe(loop.stop)

"""A test backend for worker processes (loaded with REASONGEN_WORKER_IMPORTS): the fake backend, slowed down,
plus records that raise or that kill the worker process outright."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence
from typing import Any

from generation.backends import register
from generation.backends.base import Prompt
from generation.backends.fake import FakeBackend
from generation.records import DraftResult


class SlowBackend(FakeBackend):
    name = "slow"

    def __init__(self, model: str = "slow-fake", delay_s: float = 0.0, kill_keys: Sequence[str] = (),
                 raise_keys: Sequence[str] = (), calls_file: str | None = None, **options: Any):
        super().__init__(model=model, **options)
        self.delay_s, self.kill_keys, self.raise_keys = delay_s, set(kill_keys), set(raise_keys)
        self.calls_file = calls_file  # one line per record generated: what a paying user would be billed for

    @classmethod
    def from_settings(cls, settings: Any, model: str | None = None, **options: Any) -> "SlowBackend":
        return cls(model=model or "slow-fake", **options)

    def generate(self, prompts: Sequence[Prompt]) -> list[DraftResult]:
        keys = {p.view.key for p in prompts}
        if keys & self.kill_keys:
            os.kill(os.getpid(), signal.SIGKILL)
        if keys & self.raise_keys:
            raise RuntimeError("poison record")
        time.sleep(self.delay_s)
        if self.calls_file:
            with open(self.calls_file, "a", encoding="utf-8") as f:
                f.write("".join(f"{p.view.key}\n" for p in prompts))
        return super().generate(prompts)


register("slow", "tests.queue.slow_backend:SlowBackend.from_settings")

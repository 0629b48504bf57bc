"""Trainer callbacks: loss points into the database as they are logged, and throughput."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from storage.uow import UnitOfWork


class DbMetricsCallback(TrainerCallback):
    """Each train/eval loss goes to run_metrics at once, in its own short unit of work, so
    `reasongen runs` shows a live curve and a crash loses nothing already logged."""

    def __init__(self, uow_factory: Callable[[], UnitOfWork], run_id: int):
        self.uow_factory = uow_factory
        self.run_id = run_id

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        logs = logs or {}
        points = [(split, logs[name]) for split, name in (("train", "loss"), ("eval", "eval_loss")) if name in logs]
        if not points or not state.is_world_process_zero:
            return
        with self.uow_factory() as uow:
            for split, loss in points:
                uow.runs.add_metric(self.run_id, split, state.global_step, float(loss),
                                    epoch=logs.get("epoch"), learning_rate=logs.get("learning_rate"))
            uow.commit()


class ThroughputCallback(TrainerCallback):
    """Input tokens (padding excluded) per second of this session's training loop."""

    def __init__(self) -> None:
        self.tokens_per_s: float | None = None
        self.resumed_from_step = 0
        self._start = 0.0
        self._tokens = 0

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        self._start, self._tokens = time.perf_counter(), state.num_input_tokens_seen
        self.resumed_from_step = state.global_step

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        elapsed = time.perf_counter() - self._start
        tokens = state.num_input_tokens_seen - self._tokens
        self.tokens_per_s = tokens / elapsed if elapsed > 0 and tokens > 0 else None


class StepCallback(TrainerCallback):
    """Calls ``report(step, max_steps, last_train_loss)`` after every optimizer step (progress bars)."""

    def __init__(self, report: Callable[[int, int, float | None], None]):
        self.report = report
        self.loss: float | None = None

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.loss = (logs or {}).get("loss", self.loss)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        self.report(state.global_step, state.max_steps, self.loss)

"""Where a training run or an evaluation runs, and what the user sees of the libraries meanwhile.

With a broker a run is queued for a train worker; without one it trains in this process. Either way the
command line shows its own progress: the libraries' warnings, progress bars and log lines are kept out of
it (the trainer's log lines are in the database already, as loss points).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Literal

from reasongen.bootstrap import Wiring
from reasongen.errors import NotFound

# Libraries whose own chatter (deprecations, progress bars, info logs) the user cannot act on.
LIBRARIES = ("transformers", "peft", "trl", "torch", "datasets", "accelerate", "huggingface_hub", "tokenizers")

StepCallback = Callable[[int, int, float | None], None]


def quiet_libraries() -> None:
    """No library warnings, progress bars or info logs on the user's terminal (REASONGEN_DEBUG=1 keeps them)."""
    if os.environ.get("REASONGEN_DEBUG", "").strip().lower() in ("1", "true", "yes", "on"):
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # its fork warning
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        # e.g. "`is_gradient_checkpointing` is deprecated" on every train and eval (transformers via peft)
        warnings.filterwarnings("ignore", category=category, module=rf"({'|'.join(LIBRARIES)})(\.|$)")
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(logging.ERROR)
    with contextlib.suppress(ImportError):
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]  # untyped in transformers
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    with contextlib.suppress(ImportError):
        from datasets import disable_progress_bars
        from datasets.utils import logging as ds_logging

        disable_progress_bars()  # dataset preparation and shard bars
        ds_logging.set_verbosity_error()


@contextlib.contextmanager
def trainer_output(to: Literal["hidden", "stderr"]) -> Iterator[None]:
    """The trainer prints its log dict on stdout: hide it (a progress bar is the output), or send it to stderr
    (stdout holds JSON only)."""
    if to == "stderr":
        with contextlib.redirect_stdout(sys.stderr):
            yield
        return
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        yield


def unfinished_run(wired: Wiring, build_id: int) -> int:
    """The build's latest run that did not finish (for `train --resume`)."""
    with wired.uow() as uow:
        uow.builds.get(build_id)
        run = uow.runs.latest_unfinished(build_id)
        if run is None:
            raise NotFound(f"Build {build_id} has no unfinished run to resume; start one without --resume")
        return run.id


def launch_run(wired: Wiring, run_id: int, *, on_step: StepCallback | None = None,
               output: Literal["hidden", "stderr"] = "hidden") -> Literal["queued", "here"]:
    """Queue the run on the train queue when a broker is set ("queued"); else train it here ("here"),
    calling ``on_step(step, total, loss)`` as it goes. A failed run raises (and is recorded as failed)."""
    if wired.settings.broker_url:
        from workers.dispatch import send_train

        send_train(wired.settings, run_id)
        return "queued"
    quiet_libraries()
    from training.callbacks import StepCallback as StepReporter
    from training.train import execute_run

    with trainer_output(output):
        execute_run(wired.uow, run_id, callbacks=[StepReporter(on_step)] if on_step else None)
    return "here"

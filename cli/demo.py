"""`reasongen demo`: the whole path offline, on a bundled en/ja/zh sample, in about a minute on a laptop.

ingest -> generate (fake teacher, in-process) -> auto-review -> build the SFT set -> train a LoRA adapter on a
tiny Phi model made here -> loss plot. No services, no API key, no GPU, no network.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.panel import Panel
from rich.table import Table

from cli.context import console, fail
from reasongen.bootstrap import Wiring, bootstrap
from reasongen.settings import Settings

SAMPLE = Path(__file__).with_name("data") / "sample_multilingual.jsonl"
DATASET = "demo"


def _step(title: str, fn: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    with console.status(f"{title}..."):
        result = fn()
    console.print(f"[green]✓[/] {title} [dim]({time.perf_counter() - started:.1f}s)[/]")
    return result


def _ingest(wired: Wiring) -> int:
    from storage.ingest.pipeline import IngestOptions, ingest_file

    return ingest_file(wired.uow, SAMPLE, IngestOptions(dataset=DATASET)).read


def _generate(wired: Wiring) -> int:
    from workers.inprocess import run_here
    from workers.planning import BatchRequest, plan_batch

    planned = plan_batch(wired, BatchRequest(dataset=DATASET, backend="fake", chunk_size=8))
    run_here(wired, planned.batch_id)
    return planned.total_records


def _review(wired: Wiring) -> int:
    from review.bulk import bulk_decide
    from review.filters import parse_filter

    # The fake teacher's drafts are placeholders, so the demo approves every pending one; with a real
    # teacher you would run `reasongen review auto` (unflagged only) or `reasongen review next`.
    return len(bulk_decide(wired.uow, parse_filter(dataset=DATASET, status="pending"), "approve", "demo").planned)


def _build(wired: Wiring, out: Path) -> Any:
    from training.build import BuildOptions, build_sft

    return build_sft(wired.uow, BuildOptions(dataset=DATASET, out_dir=str(out), eval_fraction=0.2))


def _train(wired: Wiring, build_id: int, model: Path, out: Path, steps: int) -> Any:
    from training.config import TrainConfig
    from training.train import create_run, execute_run

    config = TrainConfig(base_model=str(model), max_steps=steps, logging_steps=2, eval_steps=10, save_steps=steps,
                         batch_size=4, learning_rate=5e-3, lora_r=8, lora_alpha=16, max_length=512, device="cpu",
                         output_dir=str(out))
    run_id = create_run(wired.uow, build_id, config)
    # The trainer prints every log line; the demo shows the curve instead (and the losses are in the database).
    with contextlib.redirect_stdout(io.StringIO()):
        return execute_run(wired.uow, run_id)


def _tiny_model(folder: Path) -> Path:
    import json

    from training.tiny import DEFAULT_TEXTS, make_tiny_model

    texts = [" ".join(str(v) for v in json.loads(line).values()) for line in SAMPLE.read_text("utf-8").splitlines()]
    return make_tiny_model(folder, texts=[*DEFAULT_TEXTS, *texts])


def _plot(wired: Wiring, run_id: int, out: Path) -> Path:
    from training.plots import plot_runs

    plot_runs(wired.uow, [run_id], out, title="reasongen demo: LoRA on a tiny Phi")
    return out


def _quiet_libraries() -> None:
    import os
    import warnings

    # Library progress bars and deprecation notices would bury the demo's own steps.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)


def demo(
    workdir: Path = typer.Option(Path("reasongen-demo"), "--dir", help="Where the demo writes everything."),
    steps: int = typer.Option(30, "--steps", min=1, help="Training steps for the tiny model."),
) -> None:
    """Run the whole pipeline offline on a bundled sample: fake teacher, tiny model, CPU. Takes about a minute."""
    _quiet_libraries()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    workdir = workdir.resolve()
    # Always the embedded database and in-process work, whatever the environment says.
    settings = Settings(database_url=f"sqlite:///{workdir / 'reasongen.db'}", broker_url=None)
    from storage.migrate import upgrade

    _step("Create the embedded SQLite database", lambda: upgrade(settings.database_url))
    wired = bootstrap(settings)
    try:
        _run(wired, workdir, steps)
    except Exception as exc:  # noqa: BLE001 - one clear line, then the folder to look in
        fail(f"demo stopped: {exc} (partial results in {workdir})")
    finally:
        wired.close()


def _run(wired: Wiring, workdir: Path, steps: int) -> None:
    n = _step("Ingest the bundled en/ja/zh sample", lambda: _ingest(wired))
    drafted = _step("Generate reasoning drafts with the FAKE teacher (in-process)", lambda: _generate(wired))
    approved = _step("Review: approve the drafts", lambda: _review(wired))
    build = _step("Build the SFT set (seed layout + chat/alpaca/sharegpt formats)",
                  lambda: _build(wired, workdir / "build"))
    model = _step("Make a tiny random Phi model and tokenizer locally", lambda: _tiny_model(workdir / "tiny-phi"))
    run = _step(f"Train a LoRA adapter for {steps} steps on CPU",
                lambda: _train(wired, build.build_id, model, workdir / "run", steps))
    plot = _step("Plot the loss curve", lambda: _plot(wired, run.run_id, workdir / "loss.png"))
    _summary(workdir, n, drafted, approved, build, run, plot)


def _summary(workdir: Path, n: int, drafted: int, approved: int, build: Any, run: Any, plot: Path) -> None:
    table = Table("what", "where", show_header=False)
    table.add_row("database", str(workdir / "reasongen.db"))
    table.add_row("records / drafts / approved", f"{n} / {drafted} / {approved}")
    table.add_row(f"SFT set (build {build.build_id})", str(build.out_dir))
    table.add_row(f"adapter (run {run.run_id})", str(run.output_dir))
    loss = f"{run.final_train_loss:.3f}" if run.final_train_loss is not None else "-"
    table.add_row("final train loss", loss)
    table.add_row("loss curve", str(plot))
    console.print(table)
    console.print(Panel(
        "The teacher was [bold]FAKE[/]: its drafts are placeholders, marked fake everywhere they appear.\n"
        "For real reasoning, point reasongen at a teacher model:\n"
        "  export OPENAI_API_KEY=...            # OpenAI, or any compatible server:\n"
        "  export OPENAI_BASE_URL=http://localhost:8000/v1   # vLLM  (Ollama: http://localhost:11434/v1)\n"
        "  reasongen generate --dataset NAME --backend teacher --model MODEL\n"
        "or run the local Phi-2 on a GPU: reasongen generate --dataset NAME --backend local --model microsoft/phi-2\n"
        f"Look around: REASONGEN_DATABASE_URL=sqlite:///{workdir / 'reasongen.db'} reasongen review list",
        title="next steps", expand=False))


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)

"""`reasongen train`, `reasongen runs [plot]`, `reasongen eval [show]`: fine-tune and look at the results."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from cli.context import console, fail, print_json, wiring
from cli.tables import Col, listing
from reasongen.errors import require
from reasongen.bootstrap import Wiring
from training.config import PHI2_TARGET_MODULES, TrainConfig
from training.launch import launch_run, quiet_libraries, unfinished_run

JSON_HELP = "Print JSON."


class DefaultGroup(TyperGroup):
    """A group that runs its default command when the first word is not a subcommand:
    `reasongen runs --json` is `runs list --json`, `reasongen eval 3` is `eval run 3`."""

    default_command = ""

    def parse_args(self, ctx, args):  # type: ignore[no-untyped-def]
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


class RunsGroup(DefaultGroup):
    default_command = "list"


class EvalGroup(DefaultGroup):
    default_command = "run"


def train(
    ctx: typer.Context,
    build: int = typer.Option(..., "--build", "-b", help="Build id (see: reasongen builds)."),
    base_model: str = typer.Option("microsoft/phi-2", "--base-model", help="Model folder or hub name."),
    lora_r: int = typer.Option(16, "--lora-r", min=1, help="LoRA rank."),
    lora_alpha: int = typer.Option(32, "--lora-alpha", min=1, help="LoRA alpha."),
    lora_dropout: float = typer.Option(0.05, "--lora-dropout", min=0.0, max=0.9, help="LoRA dropout."),
    target_modules: str = typer.Option(",".join(PHI2_TARGET_MODULES), "--target-modules",
                                       help="Comma separated module names to adapt (Phi-2 names by default)."),
    epochs: Optional[float] = typer.Option(None, "--epochs", min=0.01, help="Epochs (default 2)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Optimizer steps instead of epochs."),
    lr: float = typer.Option(2e-4, "--lr", min=0.0, help="Learning rate."),
    batch_size: int = typer.Option(4, "--batch-size", min=1, help="Examples per device step."),
    grad_accum: int = typer.Option(1, "--grad-accum", min=1, help="Gradient accumulation steps."),
    max_length: int = typer.Option(1024, "--max-length", min=8,
                                   help="Trainer token limit: TRL cuts longer examples, so build with "
                                        "`build-sft --max-length N --tokenizer ...` to drop them instead."),
    logging_steps: int = typer.Option(10, "--logging-steps", min=1, help="Log (and evaluate) every N steps."),
    save_steps: int = typer.Option(50, "--save-steps", min=1, help="Checkpoint every N steps."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    output_dir: Optional[str] = typer.Option(None, "--output-dir", help="Default ./runs/run-ID."),
    resume: bool = typer.Option(False, "--resume", help="Re-run this build's latest unfinished run from its "
                                                        "last checkpoint instead of starting a new run."),
    wait: bool = typer.Option(False, "--wait", help="With a broker: follow the run until it ends."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Fine-tune a LoRA adapter on a build (TRL SFTTrainer, loss on the completion only)."""
    from training.train import create_run

    if epochs is not None and max_steps is not None:
        fail("--epochs and --max-steps exclude each other")
    with wiring(ctx) as wired:
        if resume:
            run_id = unfinished_run(wired, build)
        else:
            config = TrainConfig(
                base_model=base_model, lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                target_modules=[m.strip() for m in target_modules.split(",") if m.strip()],
                epochs=epochs or 2.0, max_steps=max_steps, learning_rate=lr, batch_size=batch_size,
                grad_accum=grad_accum, max_length=max_length, logging_steps=logging_steps,
                save_steps=save_steps, device=device, output_dir=output_dir)
            run_id = create_run(wired.uow, build, config)
        _launch(wired, run_id, wait=wait, quiet=as_json)
        row = _run_rows(wired, [run_id])[0]
    print_json(row) if as_json else _print_runs([row])


def _launch(wired: Wiring, run_id: int, *, wait: bool, quiet: bool) -> None:
    """Print where the run goes (training/launch.py decides) and follow it."""
    if quiet:  # --json: stdout holds the JSON only, the trainer's lines go to stderr
        if launch_run(wired, run_id, output="stderr") == "queued" and wait:
            _follow(wired, run_id, quiet)
        return
    if wired.settings.broker_url:
        launch_run(wired, run_id)
        console.print(f"run [bold]{run_id}[/] queued on the train queue. Follow it with: reasongen runs")
        if wait:
            _follow(wired, run_id, quiet)
        return
    console.print(f"run [bold]{run_id}[/]: training here (no broker configured)")
    screen = Console(file=sys.stdout)  # the real stdout: kept while the trainer's own log lines are hidden
    with Progress(TextColumn("[bold]run {task.fields[run]}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn(), console=screen) as bar:
        task = bar.add_task("train", total=None, run=run_id, loss="-")

        def show(step: int, total: int, loss: float | None) -> None:
            bar.update(task, completed=step, total=total, loss=_fmt(loss))

        launch_run(wired, run_id, on_step=show)


def _follow(wired: Wiring, run_id: int, quiet: bool, interval: float = 2.0) -> None:
    """Poll the database (the worker writes each logged loss there) until the run ends."""
    with contextlib.nullcontext() if quiet else console.status(f"run {run_id}: queued") as status:
        while True:
            row = _run_rows(wired, [run_id])[0]
            if status is not None:
                status.update(f"run {run_id}: {row['status']}, step {row['step']}, loss {_fmt(row['train_loss'])}")
            if row["status"] in ("completed", "failed"):
                return
            time.sleep(interval)


def _run_rows(wired: Wiring, ids: list[int] | None = None) -> list[dict[str, Any]]:
    with wired.uow() as uow:
        rows = []
        for r in uow.runs.list(ids):
            train = uow.runs.metrics(r.id, "train")
            rows.append({
                "id": r.id, "build_id": r.build_id, "batch_id": r.batch_id, "status": r.status,
                "base_model": r.base_model, "step": train[-1].step if train else 0,
                "train_loss": r.final_train_loss if r.final_train_loss is not None else uow.runs.last_loss(r.id, "train"),
                "eval_loss": r.final_eval_loss if r.final_eval_loss is not None else uow.runs.last_loss(r.id, "eval"),
                "tokens_per_s": r.tokens_per_s, "output_dir": r.output_dir, "error": r.error,
                "started_at": r.started_at, "finished_at": r.finished_at,
            })
    return rows


def _fmt(value: float | None, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


RUN_COLUMNS = [Col("run", key=True, justify="right"), Col("build", key=True, justify="right"), Col("status", key=True),
               Col("step", key=True, justify="right"), Col("train loss", key=True, justify="right"),
               Col("eval loss", key=True, justify="right"), Col("tokens/s", drop=True, justify="right"),
               Col("base model", fold=True, min_width=12)]


def _print_runs(rows: list[dict[str, Any]]) -> None:
    if not rows:
        console.print("No runs yet. Start one with: reasongen train --build ID")
        return
    cells = [[str(r["id"]), str(r["build_id"]), r["status"], str(r["step"]), _fmt(r["train_loss"]),
              _fmt(r["eval_loss"]), _fmt(r["tokens_per_s"], ",.0f"), r["base_model"]] for r in rows]
    console.print(listing(RUN_COLUMNS, cells, console, noun="run"))
    for r in rows:
        if r["error"]:
            console.print(Text.assemble(("run ", "red"), (str(r["id"]), "red"), (" failed: ", "red"), r["error"]),
                          soft_wrap=True)


runs_app = typer.Typer(cls=RunsGroup, help="Training runs: list them (default) or plot their loss curves.")
eval_app = typer.Typer(cls=EvalGroup, help="Base vs adapter answers: `eval RUN` generates, `eval show RUN` prints.")


@runs_app.command("list")
def runs_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List runs with their build, status, latest or final losses and tokens/s."""
    with wiring(ctx) as wired:
        rows = _run_rows(wired)
    print_json(rows) if as_json else _print_runs(rows)


@runs_app.command("plot")
def runs_plot(
    ctx: typer.Context,
    run_ids: list[int] = typer.Argument(..., help="Run ids to overlay."),
    out: Path = typer.Option(Path("loss.png"), "--out", "-o", help="PNG file to write."),
    title: Optional[str] = typer.Option(None, "--title", help="Chart title."),
) -> None:
    """Overlay the loss curves of runs (train solid, eval dashed), one colour per run."""
    from training.plots import plot_runs

    with wiring(ctx) as wired:
        plot_runs(wired.uow, run_ids, out, title)
    console.print(f"wrote {out}")


@eval_app.command("run")
def eval_run(
    ctx: typer.Context,
    run_id: int = typer.Argument(..., help="A completed run."),
    prompts: Optional[Path] = typer.Option(None, "--prompts", help='JSONL with {"prompt": ...} per line.'),
    split: str = typer.Option("eval", "--split", help="Use the build's train or eval split (without --prompts)."),
    limit: int = typer.Option(10, "--limit", min=1, help="At most N prompts."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", min=1, help="Tokens to generate per answer."),
) -> None:
    """Generate with the base model and with the adapter for the same prompts; store them side by side."""
    for module in ("torch", "transformers", "peft"):  # say so now, not after the run is looked up
        require(module, "eval", extra="train")
    from training.evaluate import evaluate_run

    quiet_libraries()  # the spinner is the output
    if split not in ("train", "eval"):
        fail("--split must be train or eval")
    with wiring(ctx) as wired:
        with console.status(f"run {run_id}: generating base and adapter answers..."):
            n = evaluate_run(wired.uow, run_id, prompts_file=str(prompts) if prompts else None, split=split,
                             limit=limit, max_new_tokens=max_new_tokens)
    console.print(f"stored {n} side-by-side samples; see them with: reasongen eval show {run_id}")


EVAL_COLUMNS = [Col("#", key=True, justify="right"), *(Col(name, min_width=24) for name in
                                                       ("prompt", "base model", "adapter", "reference"))]


@eval_app.command("show")
def eval_show(
    ctx: typer.Context,
    run_id: int = typer.Argument(..., help="Run id."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Print the stored base and adapter answers side by side."""
    with wiring(ctx) as wired, wired.uow() as uow:
        uow.runs.get(run_id)
        samples = uow.runs.eval_samples(run_id)
        rows = [{"record_key": s.record_key, "prompt": s.prompt, "base_output": s.base_output,
                 "adapter_output": s.adapter_output, "reference": s.reference} for s in samples]
        cells: list[list[str]] = [[str(i), s.prompt, s.base_output, s.adapter_output, s.reference or "-"]
                                  for i, s in enumerate(samples, 1)]
    if as_json:
        print_json(rows)
        return
    if not rows:
        fail(f"Run {run_id} has no eval samples yet; make them with: reasongen eval {run_id}")
    console.print(listing(EVAL_COLUMNS, cells, console, noun="sample"))


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.add_typer(runs_app, name="runs")
    app.add_typer(eval_app, name="eval")

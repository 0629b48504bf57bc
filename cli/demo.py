"""`reasongen demo`: the whole path offline, on a bundled en/ja/zh sample, in about a minute on a laptop.

ingest -> `generate --judge fake --policy demo --then train` (fake teacher answering ja/zh in marked stand-in
English, fake judge scoring by simple checks, the policy deciding, in-process) -> the gate holds the follow-up
while drafts are left for people -> release -> build (with its dataset card) -> LoRA on a tiny Phi made here ->
loss plot. No services, no API key, no GPU, no network.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.table import Column, Table

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


POLICY = "demo"


def _policy(wired: Wiring) -> str:
    from review.policy import PolicySpec, save_policy

    spec = PolicySpec(POLICY, approve_min=4, reject_max=2)
    with wired.uow() as uow:
        save_policy(uow, spec)
        uow.commit()
    return spec.describe()


def _generate(wired: Wiring, workdir: Path, steps: int) -> dict[str, Any]:
    """generate --judge fake --policy demo --then train: judged and decided in the same chunks, nobody typing."""
    from judging.plan import judge_params
    from workers.inprocess import run_here
    from workers.planning import BatchRequest, plan_batch

    train = {"max_steps": steps, "logging_steps": 2, "eval_steps": 10, "save_steps": steps, "batch_size": 4,
             "learning_rate": 5e-3, "lora_r": 8, "lora_alpha": 16, "max_length": 512, "device": "cpu",
             "output_dir": str(workdir / "run")}
    extra = {**judge_params(wired, "fake", policy=POLICY), "train_config": train}
    planned = plan_batch(wired, BatchRequest(dataset=DATASET, backend="fake", chunk_size=8, then="train",
                                             extra_params=extra))
    with contextlib.redirect_stdout(io.StringIO()):  # a follow-up that fires here trains quietly
        run_here(wired, planned.batch_id)
    return _decisions(wired, planned.batch_id)


def _decisions(wired: Wiring, batch_id: int) -> dict[str, Any]:
    from sqlalchemy import func, select

    from storage.models import Batch, Draft

    with wired.uow() as uow:
        rows = dict(uow.session.execute(select(Draft.status, func.count()).where(
            Draft.batch_id == batch_id).group_by(Draft.status)).all())
        batch = uow.session.get(Batch, batch_id)
        held = batch is not None and batch.followup_enqueued_at is None
    return {"batch": batch_id, "approved": rows.get("approved", 0), "rejected": rows.get("rejected", 0),
            "left": rows.get("pending", 0), "held": held}


def _release(wired: Wiring, batch_id: int) -> Any:
    """What a person does once the spot checks look fine: `reasongen release BATCH` (build + train now)."""
    from judging import gate

    with contextlib.redirect_stdout(io.StringIO()):
        return gate.release(wired, batch_id)


def _results(wired: Wiring, batch_id: int) -> tuple[Any, Any]:
    with wired.uow() as uow:
        build, run = uow.builds.for_batch(batch_id), uow.runs.for_batch(batch_id)
        if build is None or run is None:
            raise RuntimeError(f"batch {batch_id}'s follow-up left no build or run")
        return (_Built(build.id, Path(build.out_dir)),
                _Trained(run.id, run.output_dir, run.final_train_loss, run.status))


class _Built:
    def __init__(self, build_id: int, out_dir: Path):
        self.build_id, self.out_dir = build_id, out_dir


class _Trained:
    def __init__(self, run_id: int, output_dir: str, final_train_loss: float | None, status: str):
        self.run_id, self.output_dir, self.final_train_loss, self.status = run_id, output_dir, final_train_loss, status


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
    model = _step("Make a tiny random Phi model and tokenizer locally", lambda: _tiny_model(workdir / "tiny-phi"))
    # Always the embedded database and in-process work, whatever the environment says; the tiny model is the
    # one the follow-up fine-tunes.
    settings = Settings(database_url=f"sqlite:///{workdir / 'reasongen.db'}", broker_url=None,
                        local_model=str(model))
    from storage.migrate import upgrade

    _step("Create the embedded SQLite database", lambda: upgrade(settings.database_url))
    wired = bootstrap(settings)
    here = Path.cwd()
    os.chdir(workdir)  # the follow-up's build lands in ./builds, as it would for a user
    try:
        _run(wired, workdir, steps)
    except Exception as exc:  # noqa: BLE001 - one clear line, then the folder to look in
        fail(f"demo stopped: {exc} (partial results in {workdir})")
    finally:
        os.chdir(here)
        wired.close()


def _run(wired: Wiring, workdir: Path, steps: int) -> None:
    n = _step("Ingest the bundled en/ja/zh sample", lambda: _ingest(wired))
    rule = _step("Set the approval policy 'demo'", lambda: _policy(wired))
    console.print(f"  [dim]{rule}[/]", highlight=False)
    found = _step("Generate with the FAKE teacher, judge with the FAKE judge, decide by policy (unattended)",
                  lambda: _generate(wired, workdir, steps))
    console.print(f"  policy: [green]{found['approved']} approved[/], [red]{found['rejected']} rejected[/], "
                  f"[yellow]{found['left']} left for people[/]", highlight=False)
    if found["held"]:
        console.print(f"  the follow-up (train) waits for review: {found['left']} draft(s) pending. The demo "
                      f"releases it, as you would with: reasongen release {found['batch']}", highlight=False)
        _step("Release: build the SFT set from the approved drafts and train a LoRA adapter on CPU",
              lambda: _release(wired, found["batch"]))
    build, run = _results(wired, found["batch"])
    if run.status != "completed":
        raise RuntimeError(f"training run {run.run_id} ended {run.status}")
    plot = _step("Plot the loss curve", lambda: _plot(wired, run.run_id, workdir / "loss.png"))
    _summary(workdir, n, found, build, run, plot)


def _summary(workdir: Path, n: int, found: dict[str, Any], build: Any, run: Any, plot: Path) -> None:
    # Paths fold instead of ending in "…": they are the point of this table, and must be copyable whole.
    table = Table(Column("what", max_width=26), Column("where", overflow="fold"), show_header=False)
    table.add_row("database", str(workdir / "reasongen.db"))
    table.add_row("records / approved / rejected / left for people",
                  f"{n} / {found['approved']} / {found['rejected']} / {found['left']}")
    table.add_row(f"SFT set (build {build.build_id})", f"{build.out_dir} (dataset card: README.md)")
    table.add_row(f"adapter (run {run.run_id})", str(run.output_dir))
    loss = f"{run.final_train_loss:.3f}" if run.final_train_loss is not None else "-"
    table.add_row("final train loss", loss)
    table.add_row("loss curve", str(plot))
    console.print(table)
    # Plain lines, never wrapped inside a box: every command can be copied and run as printed.
    steps = [
        "[bold]next steps[/] (the teacher was [bold]FAKE[/]: its drafts are placeholders, marked fake everywhere)",
        "Look around:",
        f"  export REASONGEN_DATABASE_URL=sqlite:///{workdir / 'reasongen.db'}",
        "  reasongen review list",
        "  reasongen status",
        "  reasongen runs",
        "For real reasoning, point reasongen at a teacher model (OpenAI, or any compatible server):",
        "  export OPENAI_API_KEY=...",
        "  export OPENAI_BASE_URL=http://localhost:8000/v1   # vLLM; Ollama: http://localhost:11434/v1",
        "  reasongen generate --dataset NAME --backend teacher --model MODEL",
        "or the local Phi-2 on a GPU:",
        "  reasongen generate --dataset NAME --backend local --model microsoft/phi-2",
        "Judge with a second model and let a policy decide: --judge teacher --policy NAME --then train;",
        "spot-check the policy, then measure how far to trust it:",
        "  reasongen review next --sample 20 --stratify lang",
        "  reasongen review agreement",
    ]
    for line in steps:
        console.print(line, soft_wrap=True, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)

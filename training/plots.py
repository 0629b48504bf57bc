"""Loss curves of several runs on one chart: one colour per run, train solid, eval dashed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storage.uow import UnitOfWork

if TYPE_CHECKING:
    from matplotlib.figure import Figure  # untyped: reads as Any


def curves(uow_factory: Callable[[], UnitOfWork], run_ids: Sequence[int]) -> list[dict[str, Any]]:
    """[{run_id, build_id, train: [(step, loss)], eval: [...]}] in the order asked."""
    with uow_factory() as uow:
        out: list[dict[str, Any]] = []
        for run_id in run_ids:
            run = uow.runs.get(run_id)
            points: dict[str, list[tuple[int, float]]] = {"train": [], "eval": []}
            for m in uow.runs.metrics(run_id):
                points.setdefault(m.split, []).append((m.step, m.loss))
            out.append({"run_id": run.id, "build_id": run.build_id, **points})
    return out


def plot_runs(uow_factory: Callable[[], UnitOfWork], run_ids: Sequence[int], out: Path,
              title: str | None = None) -> Figure:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and workers
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for index, curve in enumerate(curves(uow_factory, run_ids)):
        colour, label = f"C{index % 10}", f"run {curve['run_id']} (build {curve['build_id']})"
        for split, style in (("train", "-"), ("eval", "--")):
            if curve[split]:
                steps, losses = zip(*curve[split])
                ax.plot(steps, losses, style, color=colour, label=f"{label} {split}")
    ax.set(xlabel="step", ylabel="loss", title=title or "Loss by run (train solid, eval dashed)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=120)
    plt.close(fig)
    return fig

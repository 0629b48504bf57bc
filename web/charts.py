"""Loss curves as inline SVG, drawn on the server (no chart library, nothing to download)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

COLOURS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2")


@dataclass(frozen=True)
class Series:
    label: str
    points: Sequence[tuple[float, float]]  # (step, loss)
    dashed: bool = False


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    lines: list[dict[str, object]]
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]
    pad: int = 48


def loss_chart(series: Sequence[Series], width: int = 720, height: int = 300, pad: int = 48) -> Chart | None:
    pts = [p for s in series for p in s.points]
    if not pts:
        return None
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1e-6)

    def sx(x: float) -> float:
        return pad + (x - x0) / (x1 - x0) * (width - 2 * pad)

    def sy(y: float) -> float:
        return height - pad - (y - y0) / (y1 - y0) * (height - 2 * pad)

    lines = [{"label": s.label, "colour": COLOURS[i // 2 % len(COLOURS)] if _paired(series) else COLOURS[i % 6],
              "dashed": s.dashed, "points": " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s.points)}
             for i, s in enumerate(series) if s.points]
    xt = [(sx(x0 + (x1 - x0) * k / 4), f"{x0 + (x1 - x0) * k / 4:.0f}") for k in range(5)]
    yt = [(sy(y0 + (y1 - y0) * k / 4), f"{y0 + (y1 - y0) * k / 4:.3f}") for k in range(5)]
    return Chart(width, height, lines, xt, yt, pad)


def _paired(series: Sequence[Series]) -> bool:
    # train and eval of one run share a colour (eval dashed), as in the seed's charts
    return any(s.dashed for s in series)

"""Jinja2 filters shared by the templates. Autoescaping stays on: record text is shown, never interpreted."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from jinja2 import Environment


def when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}" if value else "—"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def pretty(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


def percent(part: float, whole: float) -> float:
    return round(100.0 * part / whole, 1) if whole else 0.0


def register_filters(env: Environment) -> None:
    env.filters.update(when=when, duration=duration, pretty=pretty)
    env.globals.update(percent=percent)

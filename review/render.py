"""Rich renderables for reviewing: one draft side by side, a draft table, a history.

User text is always wrapped in ``Text`` so brackets in a draft are never read as Rich markup; Rich
measures CJK characters as two cells, so Japanese and Chinese wrap cleanly inside the panels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from generation.restructure import LANGUAGE_NAMES, restructure
from review.views import field_diff
from storage.models import ReviewEvent
from storage.repositories.reviews import DraftRow

STATUS_STYLES = {"pending": "yellow", "approved": "green", "rejected": "red", "failed": "magenta"}
SIDE_BY_SIDE_MIN_WIDTH = 100


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def draft_view(row: DraftRow, width: int = 120) -> RenderableType:
    """The record, its restructured form and the draft: source on the left, model text on the right."""
    d, r = row.draft, row.record
    view = restructure(r)
    lang = LANGUAGE_NAMES.get(r.lang, r.lang)
    source = _panel(f"Source record ({lang})", [("instruction", r.instruction), ("input", r.input),
                                                ("reference output", r.output)])
    recast = _panel("Restructured (what the model sees)", [("instruction", view.instruction), ("input", view.input)])
    model = _panel("Draft", [("transformed input", d.transformed_input), ("response", d.response)])
    reasoning = _panel("Reasoning", [("", d.reasoning)] if not d.error else [("error", d.error)])
    return Group(_header(row), _pair(source, recast, width), _pair(model, reasoning, width))


def _header(row: DraftRow) -> Text:
    d, r = row.draft, row.record
    text = Text.assemble(("draft ", "bold"), (str(d.id), "bold cyan"), "  ", status_text(d.status),
                         f"  v{d.version}", ("  edited" if d.edited else "", "italic"),
                         ("  FAKE" if d.is_fake else "", "bold magenta"))
    text.append(f"\n{row.dataset}/{r.key}  lang={r.lang}  field={r.field or '-'}  uniqueness={r.uniqueness or '-'}"
                f"  model={d.model}")
    text.append("\nflags: ").append(", ".join(d.flags or []) or "none", style="red" if d.flags else "green")
    if d.review_note or d.reviewer:
        text.append(f"\nlast review: {d.reviewer or '-'}  note: {d.review_note or '-'}")
    return text


def _panel(title: str, parts: Sequence[tuple[str, str | None]]) -> Panel:
    body = Text()
    for i, (label, value) in enumerate(parts):
        if label:
            body.append(("\n\n" if i else "") + label + "\n", style="bold dim")
        body.append(value if value else "(empty)", style="" if value else "dim italic")
    return Panel(body, title=title, title_align="left")


def _pair(left: RenderableType, right: RenderableType, width: int) -> RenderableType:
    if width < SIDE_BY_SIDE_MIN_WIDTH:
        return Group(left, right)
    grid = Table.grid(expand=True, padding=(0, 1))
    grid.add_column(ratio=1)
    grid.add_column(ratio=1)
    grid.add_row(left, right)
    return grid


def draft_cells(row: DraftRow) -> list[Text]:
    """One draft as list cells: id, status, version, dataset/key, lang, field, flags, response excerpt."""
    d, r = row.draft, row.record
    return [Text(str(d.id)), status_text(d.status + ("*" if d.edited else "")), Text(str(d.version)),
            Text(f"{row.dataset}/{r.key}"), Text(r.lang), Text(r.field or "-"), Text(",".join(d.flags or []) or "-"),
            Text(_excerpt(d.response or d.error or ""))]


def _excerpt(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def history_view(events: Sequence[ReviewEvent]) -> RenderableType:
    if not events:
        return Text("no review changes yet", style="dim")
    return Group(*(_event(e) for e in events))


def _event(event: ReviewEvent) -> RenderableType:
    head = Text.assemble((f"{event.created_at:%Y-%m-%d %H:%M:%S}", "dim"), "  ", (event.reviewer, "bold"), "  ",
                         (event.action, "cyan"), f"  {event.from_status} -> {event.to_status}")
    if event.note:
        head.append("  note: ").append(event.note, style="italic")
    diffs = [_diff_text(k, event.before.get(k), event.after.get(k)) for k in event.after if k != "status"]
    return Group(head, *diffs)


def _diff_text(name: str, before: Any, after: Any) -> Text:
    out = Text()
    for line in field_diff(name, before, after).splitlines():
        style = "green" if line.startswith("+") else "red" if line.startswith("-") else "dim"
        out.append("    " + line + "\n", style=style)
    out.rstrip()
    return out

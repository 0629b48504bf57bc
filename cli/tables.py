"""Listings that read well at any width: a table when it fits, fewer columns when not, else one block per row.

Every listing command builds its table here. Ids (``key`` columns) are never wrapped or cut; an ``excerpt``
column takes the width that is left and ends in "…"; ``drop`` columns go first when the terminal is narrow;
when even the essential columns do not fit, each row becomes a vertical block of "name  value" lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

Cell = str | Text
Justify = Literal["left", "right", "center"]


@dataclass(frozen=True)
class Col:
    name: str
    key: bool = False  # an id or name: shown whole, never wrapped or cut
    drop: bool = False  # left out first on a narrow terminal
    excerpt: bool = False  # one line, takes the remaining width, cut with "…"
    fold: bool = False  # a path or model name: may break anywhere (else only between words)
    justify: Justify = "left"
    min_width: int | None = None


def listing(cols: Sequence[Col], rows: Sequence[Sequence[Cell]], console: Console, *,
            title: str | None = None, noun: str | None = None) -> RenderableType:
    """The widest layout that fits ``console``: all columns, the essential ones, or vertical blocks."""
    keep_all = list(range(len(cols)))
    essential = [i for i, c in enumerate(cols) if not c.drop]
    # All columns only if nothing has to wrap for them; the essential ones may wrap between words.
    tries = [(keep_all, True), (essential, False)] if len(essential) < len(cols) else [(keep_all, False)]
    for shown, unwrapped in tries:
        sub_cols, sub_rows = [cols[i] for i in shown], [[row[i] for i in shown] for row in rows]
        if min_width(sub_cols, sub_rows, unwrapped) <= console.width:
            return _table(sub_cols, sub_rows, title)
    return vertical(cols, rows, title, noun)


def _table(cols: Sequence[Col], rows: Sequence[Sequence[Cell]], title: str | None) -> Table:
    # An excerpt column needs expand: Rich shrinks a non-expanding table's no-wrap columns to nothing.
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  expand=any(c.excerpt for c in cols))
    for i, col in enumerate(cols):
        cells = [_text(row[i]) for row in rows]
        if col.key:
            widest = max([len(col.name), *(c.cell_len for c in cells)])
            table.add_column(col.name, justify=col.justify, no_wrap=True, min_width=widest)
        elif col.excerpt:
            table.add_column(col.name, justify=col.justify, no_wrap=True, overflow="ellipsis", ratio=1,
                             min_width=col.min_width or 16)
        else:
            table.add_column(col.name, justify=col.justify, overflow="fold", min_width=col.min_width)
    for row in rows:
        table.add_row(*(_text(cell) for cell in row))
    return table


GAP = 3  # between columns: padding, the (blank) divider, padding


def min_width(cols: Sequence[Col], rows: Sequence[Sequence[Cell]], unwrapped: bool = False) -> int:
    """The narrowest the table can be with ids whole, excerpts at their minimum and no word broken (with
    ``unwrapped``: no cell of up to 40 characters wrapped either). Rich's own measurement is the width after it
    has squeezed columns, so it cannot tell."""
    total = GAP * (len(cols) - 1)
    for i, col in enumerate(cols):
        cells = [_text(row[i]).plain for row in rows]
        if col.key:
            need = max([len(col.name), *(Text(c).cell_len for c in cells)])
        elif col.excerpt or col.fold:
            need = col.min_width or 16
        else:
            pieces = [col.name, *cells] if unwrapped else [w for text in [col.name, *cells] for w in text.split()]
            need = max([col.min_width or 0, *(min(Text(p).cell_len, 40) for p in pieces)])
        total += need
    return total


def vertical(cols: Sequence[Col], rows: Sequence[Sequence[Cell]], title: str | None = None,
             noun: str | None = None) -> RenderableType:
    """One block per row: "NOUN FIRST-VALUE" as a heading (noun: the first column's name), then "name  value"
    lines."""
    blocks: list[RenderableType] = [Text(title, style="bold")] if title else []
    for row in rows:
        head = Text.assemble((f"{noun or cols[0].name} ", "bold"), (_text(row[0]).plain, "bold cyan"))
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column(overflow="fold")
        for col, cell in zip(cols[1:], row[1:]):
            grid.add_row(col.name, _text(cell))
        blocks.extend([head, grid, Text("")])
    return Group(*blocks)


def _text(cell: Cell) -> Text:
    """User data is never read as Rich markup."""
    return cell if isinstance(cell, Text) else Text(str(cell))


def counts(pairs: Sequence[tuple[str, object]], console: Console, title: str | None = None) -> RenderableType:
    """A small "name  value" table (e.g. a build's counts), never wider than the terminal."""
    cols = [Col("what", key=True), Col("count", justify="right")]
    return listing(cols, [[name, f"{value:,}" if isinstance(value, int) else str(value)] for name, value in pairs],
                   console, title=title)

"""Editing a draft's text in $VISUAL / $EDITOR (Click's edit): a sectioned temp file, parsed and validated on save.

The file looks like::

    # comments (only above the first section)
    === reasoning ===
    text...
    === response ===
    text...

Text inside a section is kept as written (a '#' there is text), minus surrounding blank lines.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import click

from review.rules import InvalidEditError

SECTION = re.compile(r"^=== ([a-z_]+) ===\s*$")
PROBLEM = "# NOT APPLIED: "


def editor_command() -> str | None:
    """$VISUAL, else $EDITOR (None: Click's own default, vi or notepad) - the usual Unix order."""
    return os.environ.get("VISUAL") or os.environ.get("EDITOR") or None


def to_text(draft_id: int, version: int, fields: Mapping[str, str | None]) -> str:
    head = [f"# Draft {draft_id} (version {version}). Edit the text under each '=== name ===' line,",
            "# then save and quit to apply. Empty the file to abort."]
    body = [f"=== {name} ===\n{value or ''}\n" for name, value in fields.items()]
    return "\n".join(head) + "\n\n" + "\n".join(body)


def parse(text: str, expected: tuple[str, ...]) -> dict[str, str]:
    """Section name -> text; every expected section exactly once, nothing else."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for n, line in enumerate(text.splitlines(), 1):
        match = SECTION.match(line)
        if match:
            current = _open_section(found, match.group(1), expected, n)
        elif current is not None:
            current.append(line)
        elif line.strip() and not line.startswith("#"):
            raise InvalidEditError(f"line {n}: text outside a section; put it under a '=== name ===' line")
    missing = [name for name in expected if name not in found]
    if missing:
        raise InvalidEditError(f"missing section(s): {', '.join(f'=== {m} ===' for m in missing)}")
    return {name: "\n".join(lines).strip("\n") for name, lines in found.items()}


def _open_section(found: dict[str, list[str]], name: str, expected: tuple[str, ...], n: int) -> list[str]:
    if name not in expected:
        raise InvalidEditError(f"line {n}: unknown section {name!r}; editable: {', '.join(expected)}")
    if name in found:
        raise InvalidEditError(f"line {n}: section {name!r} appears twice")
    found[name] = []
    return found[name]


def run_editor(text: str, command: str | None = None) -> str:
    """Open ``text`` in the editor (Click's edit: $VISUAL, else $EDITOR) and return what was saved."""
    try:
        saved = click.edit(text, editor=command or editor_command(), require_save=False, extension=".txt")
    except click.ClickException as exc:  # the editor failed or exited non-zero
        raise InvalidEditError(f"{exc.format_message()}; nothing applied") from exc
    return text if saved is None else saved


def edit_loop(draft_id: int, version: int, fields: Mapping[str, str | None],
              validate: Callable[[dict[str, str]], object], ask_retry: Callable[[str], bool],
              command: str | None = None) -> dict[str, str] | None:
    """Edit until the content is valid (returned) or the reviewer gives up (None)."""
    text = to_text(draft_id, version, fields)
    while True:
        text = run_editor(text, command)
        if not text.strip():
            return None
        try:
            values = parse(text, tuple(fields))
            validate(values)
            return values
        except InvalidEditError as exc:
            if not ask_retry(str(exc)):
                return None
            text = with_problem(text, str(exc))


def with_problem(text: str, problem: str) -> str:
    """The reviewer's own text again, with the reason it was refused on top (replacing an older one)."""
    lines = [line for line in text.splitlines() if not line.startswith(PROBLEM)]
    return "\n".join([f"{PROBLEM}{problem}", *lines]) + "\n"


def keep(draft_id: int, values: Mapping[str, str], version: int) -> Path:
    """Save an edit that could not be applied, so the reviewer's work is not lost."""
    fd, name = tempfile.mkstemp(prefix=f"reasongen-draft-{draft_id}-", suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(to_text(draft_id, version, values))
    return Path(name)

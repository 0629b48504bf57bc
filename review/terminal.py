"""Single keys from the terminal: Click's getchar on a tty (one key, no Enter), a line of input otherwise."""

from __future__ import annotations

import sys
from typing import TextIO

import click


def read_key(stream: TextIO | None = None) -> str:
    """One lower-cased key; 'q' at end of input. Ctrl-C still interrupts."""
    stream = stream or sys.stdin
    if not stream.isatty():
        line = stream.readline()
        return line.strip()[:1].lower() if line else "q"
    try:
        key = click.getchar()  # raw mode for one key; Ctrl-C raises KeyboardInterrupt
    except EOFError:  # Ctrl-D
        return "q"
    return "q" if key in ("\x04", "") else key.lower()


def read_line(prompt: str, stream: TextIO | None = None) -> str | None:
    """A line of text (for notes); None at end of input."""
    stream = stream or sys.stdin
    sys.stdout.write(prompt)
    sys.stdout.flush()
    line = stream.readline()
    return line.rstrip("\n") if line else None

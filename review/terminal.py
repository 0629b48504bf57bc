"""Single keys from the terminal: raw mode for one byte on a tty, a line of input otherwise."""

from __future__ import annotations

import os
import sys
from typing import TextIO


def read_key(stream: TextIO | None = None) -> str:
    """One lower-cased key; 'q' at end of input. Ctrl-C still interrupts."""
    stream = stream or sys.stdin
    if not stream.isatty():
        line = stream.readline()
        return line.strip()[:1].lower() if line else "q"
    key = _raw_byte(stream.fileno())
    if key == "\x03":
        raise KeyboardInterrupt
    return "q" if key in ("\x04", "") else key.lower()


def _raw_byte(fd: int) -> str:
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        data = os.read(fd, 1)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
    return data.decode("utf-8", "replace")


def read_line(prompt: str, stream: TextIO | None = None) -> str | None:
    """A line of text (for notes); None at end of input."""
    stream = stream or sys.stdin
    sys.stdout.write(prompt)
    sys.stdout.flush()
    line = stream.readline()
    return line.rstrip("\n") if line else None

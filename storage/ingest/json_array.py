"""Split a top-level JSON array into its items without loading the file.

A small scanner tracks strings, escapes and nesting depth over fixed-size chunks and yields the raw
bytes of each top-level item with the line it starts on; each item is then parsed on its own, so a
broken item is reported on its line and the others still load.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import BinaryIO

_SPECIAL = re.compile(rb'[\\"{}\[\],\n]')
_BOM = b"\xef\xbb\xbf"


class _Scanner:
    def __init__(self) -> None:
        self.depth = 0
        self.in_string = False
        self.skip_next = False  # a backslash ended the previous chunk
        self.line = 1
        self.item = bytearray()
        self.item_line = 1
        self.done = False

    def feed(self, chunk: bytes) -> Iterator[tuple[int, bytes]]:
        pos = start = 0
        if self.skip_next:
            pos, self.skip_next = 1, False
        while not self.done and (m := _SPECIAL.search(chunk, pos)):
            char, pos = chunk[m.start()], m.end()
            if char == 0x0A:
                self.line += 1
            elif self.in_string:
                pos = self._in_string(char, pos, len(chunk))
            elif char == 0x22:
                self.in_string = True
            elif char in b"{[":
                if self.depth == 0 and char == 0x7B:
                    raise ValueError("the file is a JSON object, not an array of records; try --format jsonl")
                self.depth += 1
                if self.depth == 1:
                    start = self._begin_item(pos)
            elif (char == 0x2C and self.depth == 1) or (char in b"}]" and self.depth == 1):
                yield from self._end_item(chunk[start:m.start()])
                start = self._begin_item(pos)
                self.depth -= char != 0x2C
                self.done = self.depth == 0
            elif char in b"}]":
                self.depth -= 1
        if self.depth >= 1 and not self.done:
            self.item += chunk[start:]

    def _in_string(self, char: int, pos: int, size: int) -> int:
        if char == 0x5C:  # backslash: the next byte is escaped, whatever it is
            if pos < size:
                return pos + 1
            self.skip_next = True
        elif char == 0x22:
            self.in_string = False
        return pos

    def _begin_item(self, pos: int) -> int:
        self.item = bytearray()
        self.item_line = self.line
        return pos

    def _end_item(self, tail: bytes) -> Iterator[tuple[int, bytes]]:
        raw = bytes(self.item + tail)
        body = raw.lstrip()
        if body:
            yield self.item_line + raw[: len(raw) - len(body)].count(b"\n"), body.rstrip()

    def finish(self) -> Iterator[tuple[int, bytes]]:
        # An unterminated array: hand back what is left so the parser reports it on its line.
        if self.depth >= 1 and not self.done:
            yield from self._end_item(b"")


def iter_array_items(fh: BinaryIO, chunk_size: int = 1 << 20) -> Iterator[tuple[int, bytes]]:
    scanner = _Scanner()
    first = True
    while chunk := fh.read(chunk_size):
        if first:
            chunk, first = chunk.removeprefix(_BOM), False
        yield from scanner.feed(chunk)
        if scanner.done:
            return
    yield from scanner.finish()

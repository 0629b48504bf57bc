"""Readers: a file in, (line, raw dict) or a per-line Rejection out, one row at a time.

Every reader streams (lines, array items or Arrow record batches), so memory stays flat whatever the
file size. Line numbers are 1-based; for Parquet and Arrow folders they are row numbers.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import orjson

from storage.ingest.json_array import iter_array_items
from storage.ingest.types import RawRecord, Rejection

BOM = b"\xef\xbb\xbf"
FORMATS = ("auto", "jsonl", "json", "csv", "parquet", "hf")
Item = RawRecord | Rejection
Reader = Callable[[Path], Iterator[Item]]
# CSV has no null: an empty cell in these columns means "not given".
_CSV_OPTIONAL = ("id", "lang", "input", "field", "uniqueness")


def parse_json(file: str, line: int, raw: bytes) -> Item:
    """One JSON object from bytes, or the reason it is not one."""
    if b"\x00" in raw:
        return Rejection(file, line, "contains a NUL byte")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Rejection(file, line, _json_error(raw, exc))
    if not isinstance(data, dict):
        return Rejection(file, line, f"expected a JSON object, got {_json_type(data)}")
    return RawRecord(file, line, data, len(raw))


def _json_error(raw: bytes, exc: Exception) -> str:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"invalid UTF-8 (byte 0x{raw[bad.start]:02x} at column {bad.start + 1})"
    return f"invalid JSON: {exc}"


def _json_type(value: object) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def read_jsonl(path: Path) -> Iterator[Item]:
    # Bytes, decoded per line, so invalid UTF-8 is reported with its line number.
    name = str(path)
    with open(path, "rb") as fh:
        for line_no, raw in enumerate(fh, 1):
            if line_no == 1 and raw.startswith(BOM):
                raw = raw[len(BOM):]
            raw = raw.strip()
            if raw:
                yield parse_json(name, line_no, raw)


def read_json_array(path: Path) -> Iterator[Item]:
    name = str(path)
    with open(path, "rb") as fh:
        for line_no, raw in iter_array_items(fh):
            yield parse_json(name, line_no, raw)


def read_csv(path: Path) -> Iterator[Item]:
    # The csv module refuses cells over 128 KiB; the record size limit is the rule that applies here.
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
    name, bad_lines = str(path), set[int]()
    reader = csv.reader(_decoded_lines(path, bad_lines))
    header = next(reader, None)
    if header is None:
        return
    header = [h.strip() for h in header]
    start = reader.line_num + 1
    try:
        for row in reader:
            end, line, start = reader.line_num, start, reader.line_num + 1
            if row and any(cell.strip() for cell in row):
                yield _csv_item(name, line, end, header, row, bad_lines)
    except csv.Error as exc:
        yield Rejection(name, start, f"invalid CSV: {exc}")


def _decoded_lines(path: Path, bad_lines: set[int]) -> Iterator[str]:
    with open(path, "rb") as fh:
        for line_no, raw in enumerate(fh, 1):
            if line_no == 1 and raw.startswith(BOM):
                raw = raw[len(BOM):]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                bad_lines.add(line_no)
                yield raw.decode("utf-8", "replace")


def _csv_item(name: str, line: int, end: int, header: list[str], row: list[str], bad: set[int]) -> Item:
    broken = [n for n in range(line, end + 1) if n in bad]
    if broken:
        return Rejection(name, broken[0], "invalid UTF-8")
    if len(row) != len(header):
        return Rejection(name, line, f"expected {len(header)} columns, found {len(row)}")
    data = {k: (None if k in _CSV_OPTIONAL and not v.strip() else v) for k, v in zip(header, row)}
    return RawRecord(name, line, data, sum(len(v.encode("utf-8")) for v in row))


def read_parquet(path: Path) -> Iterator[Item]:
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as pf:
        yield from _arrow_rows(str(path), pf.iter_batches(batch_size=4096))


def read_hf(path: Path) -> Iterator[Item]:
    """A folder written by `datasets` save_to_disk (one split, or a DatasetDict of splits)."""
    import pyarrow as pa

    for arrow_file in hf_arrow_files(path):
        # Read batch by batch (not memory-mapped, whose touched pages would count as resident memory).
        with pa.OSFile(str(arrow_file)) as source:
            yield from _arrow_rows(str(arrow_file), pa.ipc.open_stream(source))


def hf_arrow_files(path: Path) -> list[Path]:
    dict_file = path / "dataset_dict.json"
    if dict_file.exists():
        splits = orjson.loads(dict_file.read_bytes()).get("splits", [])
        return [f for split in splits for f in hf_arrow_files(path / split)]
    state = path / "state.json"
    if state.exists():
        return [path / f["filename"] for f in orjson.loads(state.read_bytes()).get("_data_files", [])]
    return sorted(path.glob("*.arrow"))


def _arrow_rows(name: str, batches: Iterable) -> Iterator[Item]:  # type: ignore[type-arg]
    row = 0
    for batch in batches:
        for data in batch.to_pylist():
            row += 1
            yield RawRecord(name, row, data)


READERS: dict[str, Reader] = {
    "jsonl": read_jsonl, "json": read_json_array, "csv": read_csv, "parquet": read_parquet, "hf": read_hf,
}
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def detect_format(path: Path) -> str:
    if path.is_dir():
        return "hf"
    if path.suffix.lower() in _SUFFIXES:
        return _SUFFIXES[path.suffix.lower()]
    if path.suffix.lower() == ".json":
        return "json" if _first_byte(path) == b"[" else "jsonl"
    raise ValueError(f"{path}: cannot tell the format from the name; pass --format (one of {', '.join(FORMATS[1:])})")


def _first_byte(path: Path) -> bytes:
    with open(path, "rb") as fh:
        head = fh.read(4096)
    return head.removeprefix(BOM).lstrip()[:1]


def open_reader(path: Path, fmt: str = "auto") -> Iterator[Item]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt not in READERS:
        raise ValueError(f"unknown format {fmt!r}; use one of: {', '.join(FORMATS)}")
    return READERS[fmt](path)

"""Readers on their own: every format, line numbers, BOM, CRLF, blank lines, broken bytes."""

from __future__ import annotations

import io
import json

import pytest

from storage.ingest.json_array import iter_array_items
from storage.ingest.readers import detect_format, open_reader
from storage.ingest.types import RawRecord, Rejection
from tests.ingest.conftest import EN, JA, ZH, jsonl


def items(path, fmt="auto"):
    return [(i.line, i.data if isinstance(i, RawRecord) else i.reason) for i in open_reader(path, fmt)]


def test_jsonl_bom_crlf_and_blank_lines(write):
    path = write("a.jsonl", b"\xef\xbb\xbf" + jsonl(EN).encode().replace(b"\n", b"\r\n") + b"\r\n  \n" + jsonl(JA).encode())
    assert items(path) == [(1, EN), (4, JA)]


def test_jsonl_reports_bad_lines_with_their_numbers(write):
    path = write("b.jsonl", b'{"a": 1}\n{"a": \xff}\n{"a":\n[1]\n{"a": "\x00"}\n')
    got = items(path)
    assert got[0] == (1, {"a": 1})
    assert got[1] == (2, "invalid UTF-8 (byte 0xff at column 7)")
    assert got[2][0] == 3 and got[2][1].startswith("invalid JSON: ")
    assert got[3] == (4, "expected a JSON object, got an array")
    assert got[4] == (5, "contains a NUL byte")


@pytest.mark.parametrize("chunk", [3, 1 << 20])
def test_json_array_items_keep_their_line_numbers(chunk):
    raw = b'\xef\xbb\xbf[\n  {"a": "x,]\\\\\\"}"},\n\n  {"b": [1, {"c": "]"}]},\n  {"broken": }\n]\n'
    got = list(iter_array_items(io.BytesIO(raw), chunk_size=chunk))
    assert got == [(2, b'{"a": "x,]\\\\\\"}"}'), (4, b'{"b": [1, {"c": "]"}]}'), (5, b'{"broken": }')]


def test_json_array_file(write):
    path = write("c.json", json.dumps([EN, JA], ensure_ascii=False, indent=2))
    got = items(path)
    assert [data for _, data in got] == [EN, JA]
    assert got[0][0] == 2 and got[1][0] > got[0][0]


def test_json_object_file_is_not_an_array(write):
    path = write("o.json", '{"records": []}')
    with pytest.raises(ValueError, match="not an array"):
        list(open_reader(path, "json"))


def test_csv_multiline_cells_bom_and_empty_optional_cells(write):
    text = '\ufeffid,lang,instruction,input,output,source\r\nr1,en,"Line one\nline two",,Answer,web\r\n\r\nr2,,Q2,in,A2,\r\n'
    path = write("d.csv", text)
    assert items(path) == [
        (2, {"id": "r1", "lang": "en", "instruction": "Line one\nline two", "input": None, "output": "Answer",
             "source": "web"}),
        (5, {"id": "r2", "lang": None, "instruction": "Q2", "input": "in", "output": "A2", "source": ""}),
    ]


def test_csv_bad_bytes_and_column_count(write):
    path = write("e.csv", b"instruction,output\nq\xff,a\nq,a,extra\nq,a\n")
    assert items(path) == [(2, "invalid UTF-8"), (3, "expected 2 columns, found 3"),
                           (4, {"instruction": "q", "output": "a"})]


def test_parquet_rows(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    path = tmp_path / "f.parquet"
    pq.write_table(pa.Table.from_pylist([EN, JA, ZH]), path, row_group_size=2)
    assert items(path) == [(1, EN), (2, JA), (3, ZH)]


def test_hf_save_to_disk_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_list([EN, JA, ZH]).save_to_disk(str(tmp_path / "hf"))
    assert detect_format(tmp_path / "hf") == "hf"
    assert items(tmp_path / "hf") == [(1, EN), (2, JA), (3, ZH)]


def test_hf_dataset_dict_reads_every_split(tmp_path):
    datasets = pytest.importorskip("datasets")
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list([EN, JA]), "test": datasets.Dataset.from_list([ZH])})
    dd.save_to_disk(str(tmp_path / "dd"))
    assert sorted(data["id"] for _, data in items(tmp_path / "dd")) == ["en-1", "ja-1", "zh-1"]


def test_format_detection_and_errors(write, tmp_path):
    assert detect_format(write("x.ndjson", "")) == "jsonl"
    assert detect_format(write("x.json", '\n {"a": 1}\n')) == "jsonl"
    assert detect_format(write("y.json", "\ufeff [")) == "json"
    with pytest.raises(ValueError, match="--format"):
        detect_format(write("x.txt", ""))
    with pytest.raises(FileNotFoundError, match="no such file"):
        open_reader(tmp_path / "missing.jsonl")
    assert isinstance(next(iter(open_reader(write("z.jsonl", "nope\n")))), Rejection)


def test_csv_cells_larger_than_the_csv_module_default(write):
    big = "x" * 200_000
    assert items(write("big.csv", f"instruction,output\nq,{big}\n")) == [(2, {"instruction": "q", "output": big})]

"""Writers for every output format of a build. Each writes under the build folder, in row order.

No timestamps or absolute paths go into these files, so the same examples give the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from training.examples import Example

if TYPE_CHECKING:
    import pyarrow as pa  # untyped: its Table reads as Any

Splits = dict[str, list[Example]]
SPLITS = ("train", "eval")


@dataclass
class BuildData:
    """What every writer gets: the rows of each split, the dataset name, and Arrow tables made once."""

    splits: Splits
    dataset: str

    @cached_property
    def tables(self) -> dict[str, pa.Table]:
        return {name: _table(self.splits[name]) for name in SPLITS}


def _jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))


def _per_split(folder: str, to_row: Callable[[Example], dict[str, Any]]) -> Callable[[Path, BuildData], None]:
    def write(root: Path, data: BuildData) -> None:
        for name in SPLITS:
            _jsonl(root / folder / f"{name}.jsonl", (to_row(e) for e in data.splits[name]))

    return write


def _messages(e: Example) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": e.prompt}, {"role": "assistant", "content": e.completion}]}


def _alpaca(e: Example) -> dict[str, Any]:
    return {"instruction": e.instruction, "input": e.input, "output": e.completion}


def _sharegpt(e: Example) -> dict[str, Any]:
    return {"conversations": [{"from": "human", "value": e.prompt}, {"from": "gpt", "value": e.completion}]}


COLUMNS = ("key", "draft_id", "lang", "field", "uniqueness", "prompt", "completion")


def _table(rows: list[Example]) -> pa.Table:
    import pyarrow as pa

    schema = pa.schema([(c, pa.int64() if c == "draft_id" else pa.string()) for c in COLUMNS])
    return pa.table({c: [getattr(e, c) for e in rows] for c in COLUMNS}, schema=schema)


def write_parquet(root: Path, data: BuildData) -> None:
    import pyarrow.parquet as pq

    (root / "parquet").mkdir(parents=True, exist_ok=True)
    for name in SPLITS:
        pq.write_table(data.tables[name], root / "parquet" / f"{name}.parquet")


def write_hf_dataset(root: Path, data: BuildData) -> None:
    """`datasets` save_to_disk, with fingerprints derived from the content so the folder is reproducible."""
    import hashlib

    from datasets import Dataset, DatasetDict, disable_progress_bars

    disable_progress_bars()  # the CLI shows its own progress
    parts = {}
    for name in SPLITS:
        digest = hashlib.sha256("".join(e.digest for e in data.splits[name]).encode()).hexdigest()[:16]
        parts[name] = Dataset(data.tables[name], fingerprint=f"{name}-{digest}")
    DatasetDict(parts).save_to_disk(str(root / "hf_dataset"))


def write_llama_factory(root: Path, data: BuildData) -> None:
    """dataset_info.json for LLaMA-Factory (use this folder as --dataset_dir)."""
    info = {}
    for name in (n for n in SPLITS if data.splits[n]):  # an empty eval split gets no entry
        info[f"{data.dataset}_alpaca_{name}"] = {
            "file_name": f"alpaca/{name}.jsonl",
            "columns": {"prompt": "instruction", "query": "input", "response": "output"},
        }
        info[f"{data.dataset}_sharegpt_{name}"] = {
            "file_name": f"sharegpt/{name}.jsonl", "formatting": "sharegpt",
            "columns": {"messages": "conversations"},
            "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"},
        }
    (root / "dataset_info.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _axolotl_entry(split: str) -> list[str]:
    return [
        f"  - path: prompt_completion/{split}.jsonl",
        "    ds_type: json",
        "    split: train",
        "    type:",
        "      field_instruction: prompt",
        "      field_output: completion",
        '      format: "{instruction}"',
        '      no_input_format: "{instruction}"',
    ]


def write_axolotl(root: Path, data: BuildData) -> None:
    """A `datasets:` snippet to paste into an axolotl config (paths are relative to this build folder)."""
    lines = ["# reasongen build: run axolotl from this folder or make the paths absolute.",
             "train_on_inputs: false", "datasets:", *_axolotl_entry("train")]
    if data.splits["eval"]:
        lines += ["test_datasets:", *_axolotl_entry("eval")]
    (root / "axolotl.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


WRITERS: dict[str, Callable[[Path, BuildData], None]] = {
    "prompt_completion": _per_split("prompt_completion", lambda e: {"prompt": e.prompt, "completion": e.completion}),
    "messages": _per_split("messages", _messages),
    "alpaca": _per_split("alpaca", _alpaca),
    "sharegpt": _per_split("sharegpt", _sharegpt),
    "parquet": write_parquet,
    "hf_dataset": write_hf_dataset,
    "llama_factory": write_llama_factory,
    "axolotl": write_axolotl,
}
# A format that points at other files brings them along; prompt_completion is what `train` reads.
NEEDS = {"llama_factory": ("alpaca", "sharegpt"), "axolotl": ("prompt_completion",)}
DEFAULT_FORMATS = tuple(WRITERS)


def resolve_formats(names: list[str] | tuple[str, ...] | None) -> list[str]:
    chosen = list(names or DEFAULT_FORMATS)
    unknown = [n for n in chosen if n not in WRITERS]
    if unknown:
        raise ValueError(f"Unknown format(s) {unknown}; choose from: {', '.join(WRITERS)}")
    wanted = {"prompt_completion", *chosen, *(d for n in chosen for d in NEEDS.get(n, ()))}
    return [n for n in WRITERS if n in wanted]


# Formats that need an optional package (module, extra): skipped with a note where it is not installed.
OPTIONAL = {"hf_dataset": ("datasets", "train")}


def installable(formats: list[str]) -> tuple[list[str], dict[str, str]]:
    """The formats this install can write, and why each other one is skipped (a core install has no
    `datasets`)."""
    from importlib.util import find_spec

    skipped = {}
    for name in formats:
        module, extra = OPTIONAL.get(name, (None, None))
        if module and find_spec(module) is None:
            skipped[name] = (f"needs {module}, from the '{extra}' extra (bash scripts/install.sh {extra}, "
                             f"or pip install 'reasongen[{extra}]')")
    return [n for n in formats if n not in skipped], skipped


def write_all(root: Path, splits: Splits, dataset: str, formats: list[str]) -> None:
    data = BuildData(splits, dataset)
    for name in formats:
        WRITERS[name](root, data)

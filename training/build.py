"""build-sft: approved drafts -> examples -> dedupe, length filter, split -> files + manifest + build row."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from storage.repositories.builds import ApprovedRow
from storage.uow import UnitOfWork
from training import examples as ex
from training.formats import installable, resolve_formats, write_all
from training.manifest import MANIFEST_NAME, build_manifest, file_hashes, provenance, sha256_file
from training import card
from training.decontaminate import DEFAULT_NGRAM, EvalIndex, drop_contaminated, load_index
from training.split import split

MANIFEST_JSON = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS


@dataclass
class BuildOptions:
    dataset: str
    out_dir: str | None = None  # default: ./builds/<dataset>/build-<id>
    where: dict[str, str] = field(default_factory=dict)
    eval_fraction: float = 0.1
    seed: int = 0
    formats: list[str] | None = None
    max_length: int | None = None
    tokenizer: str | None = None
    template: str | None = None  # a TOML file with prompt/completion; None = the seed layout
    batch_id: int | None = None
    decontaminate: str | None = None  # an eval file or dataset name: drop examples sharing an n-gram with it
    ngram: int = DEFAULT_NGRAM


@dataclass
class BuildResult:
    build_id: int
    out_dir: Path
    manifest: dict[str, Any]
    manifest_sha256: str


def default_build_dir(dataset: str, build_id: int) -> Path:
    return Path.cwd() / "builds" / dataset / f"build-{build_id}"


def build_sft(uow_factory: Callable[[], UnitOfWork], options: BuildOptions) -> BuildResult:
    """Read in one short transaction, write the files outside any, record the build in a second one
    (on SQLite a write transaction open while files are written would block every other writer)."""
    template = ex.load_sft_template(Path(options.template) if options.template else None)
    formats, skipped = installable(resolve_formats(options.formats))
    params = {**_params(options, formats), "skipped_formats": skipped}
    with uow_factory() as uow:
        dataset = uow.records.dataset(options.dataset)
        rows = uow.builds.approved_rows(dataset.id, options.where)
        parent = uow.builds.latest(dataset.id)
        dataset_id, parent_manifest = dataset.id, {**parent.manifest, "build_id": parent.id} if parent else None
        index = load_index(uow, options.decontaminate, options.ngram) if options.decontaminate else None
        facts = card.collect(uow, dataset.id, [row.draft_id for row in rows])  # provenance for the dataset card
    if not rows:
        raise ValueError(f"Dataset {options.dataset!r} has no approved drafts{_filters(options.where)}")
    out = Path(options.out_dir) if options.out_dir else None
    scratch = _scratch_dir(out or default_build_dir(options.dataset, 0))
    try:
        manifest = write_build(rows, template, params, scratch, parent_manifest, index, facts)
        return _record(uow_factory, options, dataset_id, parent_manifest, params, manifest, scratch, out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _record(uow_factory: Callable[[], UnitOfWork], options: BuildOptions, dataset_id: int,
            parent: dict[str, Any] | None, params: dict[str, Any], manifest: dict[str, Any], scratch: Path,
            out: Path | None) -> BuildResult:
    """The build row, and the folder moved to its final place (named after the row when no --out)."""
    with uow_factory() as uow:
        build = uow.builds.add(dataset_id, parent["build_id"] if parent else None, options.batch_id, params)
        out = out or default_build_dir(options.dataset, build.id)
        if out.exists():
            out.rmdir()  # empty (checked before writing): rename needs it gone
        scratch.rename(out)
        sha = sha256_file(out / MANIFEST_NAME)
        try:
            uow.builds.finish(build, str(out.resolve()), manifest, sha)
            uow.commit()
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)  # no folder without its build row
            raise
    return BuildResult(build.id, out, manifest, sha)


def _scratch_dir(out: Path) -> Path:
    """A fresh folder beside ``out`` (same file system, so the final move is a rename)."""
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} already holds files; choose an empty or new --out folder")
    scratch = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.tmp"
    scratch.mkdir(parents=True)
    return scratch


def _params(options: BuildOptions, formats: list[str]) -> dict[str, Any]:
    params = asdict(options)
    for name in ("out_dir", "batch_id"):
        params.pop(name)
    return {**params, "formats": formats}


def _filters(where: dict[str, str]) -> str:
    return f" matching {where}" if where else ""


def make_splits(rows: Sequence[ApprovedRow], template: ex.SftTemplate, params: dict[str, Any],
                index: EvalIndex | None = None) -> tuple[dict[str, list[ex.Example]], dict[str, list[int]]]:
    examples = [ex.make_example(row, template) for row in rows]
    examples, duplicates = ex.dedupe(examples)
    examples, contaminated = drop_contaminated(examples, index)
    examples, too_long = ex.drop_too_long(examples, params["tokenizer"], params["max_length"])
    splits = split(examples, lambda e: e.key, params["eval_fraction"], params["seed"])
    dropped = {"duplicates": duplicates, "too_long": too_long}
    if index is not None:
        dropped["contaminated"] = contaminated
    return splits, dropped


def write_build(rows: Sequence[ApprovedRow], template: ex.SftTemplate, params: dict[str, Any], folder: Path,
                parent_manifest: dict[str, Any] | None, index: EvalIndex | None = None,
                facts: dict[str, Any] | None = None) -> dict[str, Any]:
    splits, dropped = make_splits(rows, template, params, index)
    write_all(folder, splits, params["dataset"], params["formats"])
    manifest = build_manifest(splits, dropped, template, params, file_hashes(folder), parent_manifest)
    manifest["drafts"] = provenance(rows, splits)
    if index is not None:
        manifest["decontamination"] = index.describe(dropped["contaminated"])
    (folder / MANIFEST_NAME).write_bytes(orjson.dumps(manifest, option=MANIFEST_JSON) + b"\n")
    if facts is not None:
        card.write_card(folder, manifest, facts)  # README.md (Hugging Face card), beside the manifest
    return manifest

"""The build manifest: counts, template hashes, draft ids per split, file hashes, diff from the parent."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.examples import Example, SftTemplate

if TYPE_CHECKING:
    from storage.repositories.builds import ApprovedRow

MANIFEST_NAME = "manifest.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_hashes(root: Path) -> dict[str, str]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST_NAME)
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in files}


def counts(examples: list[Example]) -> dict[str, dict[str, int]]:
    return {
        "lang": dict(sorted(Counter(e.lang for e in examples).items())),
        "field": dict(sorted(Counter(e.field for e in examples).items())),
        "uniqueness": dict(sorted(Counter(e.uniqueness for e in examples).items())),
        "lang_field": dict(sorted(Counter(f"{e.lang}/{e.field}" for e in examples).items())),
    }


def index(splits: dict[str, list[Example]]) -> dict[str, str]:
    """key -> example digest, to diff the next build against this one."""
    return {e.key: e.digest for rows in splits.values() for e in rows}


def diff(previous: dict[str, str] | None, current: dict[str, str]) -> dict[str, Any]:
    previous = previous or {}
    return {
        "added": sorted(current.keys() - previous.keys()),
        "removed": sorted(previous.keys() - current.keys()),
        "changed": sorted(k for k in current.keys() & previous.keys() if current[k] != previous[k]),
    }


def build_manifest(splits: dict[str, list[Example]], dropped: dict[str, list[int]], template: SftTemplate,
                   params: dict[str, Any], files: dict[str, str], parent: dict[str, Any] | None) -> dict[str, Any]:
    """``parent`` is the previous build's manifest (or None)."""
    everything = [e for rows in splits.values() for e in rows]
    current = index(splits)
    return {
        "dataset": params["dataset"],
        "params": params,
        "sft_template": {"name": template.name, "hash": template.hash},
        "draft_template_hashes": sorted({e.template_hash for e in everything}),
        "counts": {"total": len(everything), **{s: len(rows) for s, rows in splits.items()}, **counts(everything)},
        "counts_by_split": {s: counts(rows) for s, rows in splits.items()},
        "dropped": {k: {"count": len(v), "draft_ids": v} for k, v in dropped.items()},
        "splits": {s: [[e.key, e.draft_id] for e in rows] for s, rows in splits.items()},
        "files": files,
        "parent_build_id": parent["build_id"] if parent else None,
        "diff": diff(parent.get("index") if parent else None, current),
        "index": current,
    }


def provenance(rows: Sequence[ApprovedRow], splits: dict[str, list[Example]]) -> dict[str, Any]:
    """Which drafts in the build came from the fake backend, and which check flags each carries (the
    reviewer approved them anyway): a build trained on placeholders or flagged text says so."""
    kept = {e.draft_id for examples in splits.values() for e in examples}
    used = [r for r in rows if r.draft_id in kept]
    return {
        "fake_draft_ids": sorted(r.draft_id for r in used if r.draft_is_fake),
        "flagged_drafts": {str(r.draft_id): sorted(r.draft_flags) for r in sorted(used, key=lambda r: r.draft_id)
                           if r.draft_flags},
    }

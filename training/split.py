"""Train/eval split decided by a hash of the record key.

A record's side depends only on (seed, key), never on which other records exist, so a growing dataset
never moves an existing record between train and eval. Every lang x field stratum gets the eval fraction
in expectation (the hash is independent of the stratum); the manifest reports the actual counts per
stratum. Exact per-stratum quotas would need ranks, and ranks move when records are added.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


def eval_score(key: str, seed: int) -> float:
    """A uniform number in [0, 1) from (seed, key)."""
    digest = hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def is_eval(key: str, eval_fraction: float, seed: int) -> bool:
    return eval_score(key, seed) < eval_fraction


def split(items: Iterable[T], key_of: Callable[[T], str], eval_fraction: float, seed: int) -> dict[str, list[T]]:
    if not 0 <= eval_fraction < 1:
        raise ValueError(f"--eval-fraction must be in [0, 1), got {eval_fraction}")
    out: dict[str, list[T]] = {"train": [], "eval": []}
    for item in items:
        out["eval" if is_eval(key_of(item), eval_fraction, seed) else "train"].append(item)
    return out

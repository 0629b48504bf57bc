"""`--where "lang=en,flags=none"` and the explicit filter options, turned into a DraftFilter."""

from __future__ import annotations

from typing import Any

from review.rules import STATUSES
from storage.repositories.records import parse_where
from storage.repositories.reviews import DraftFilter

FILTER_KEYS = ("status", "dataset", "lang", "field", "uniqueness", "flag", "flags", "is_fake")
_TRUE, _FALSE = {"true", "yes", "1"}, {"false", "no", "0"}


def parse_filter(where: str | None = None, **options: Any) -> DraftFilter:
    """Filters from ``where`` text, then explicit options (None = not given) on top.

    ``flag=NAME`` keeps drafts carrying that check flag; ``flags=none`` (or ``flag=none``) keeps
    drafts without any flag.
    """
    values: dict[str, Any] = {}
    for name, value in {**parse_where(where), **{k: v for k, v in options.items() if v is not None}}.items():
        values.update(_one(name, value))
    return DraftFilter(**values)


def _one(name: str, value: Any) -> dict[str, Any]:
    if name not in FILTER_KEYS:
        raise ValueError(f"unknown filter {name!r}; use one of: {', '.join(FILTER_KEYS)}")
    if name in ("flag", "flags"):
        return _flag(name, str(value))
    if name == "is_fake":
        return {"is_fake": _bool(value)}
    if name == "status" and value not in STATUSES:
        raise ValueError(f"unknown status {value!r}; use one of: {', '.join(STATUSES)}")
    return {name: value}


def _flag(name: str, value: str) -> dict[str, Any]:
    if value.lower() == "none":
        return {"no_flags": True, "flag": None}
    if name == "flags":
        raise ValueError(f"flags={value!r}: use flags=none, or flag=NAME for drafts with that flag")
    return {"flag": value, "no_flags": False}


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in _TRUE | _FALSE:
        raise ValueError(f"is_fake={value!r}: use true or false")
    return text in _TRUE

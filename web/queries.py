"""Query-string filters of the desk and the API, turned into the CLI's DraftFilter (review.filters)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import Query

from review.filters import parse_filter
from storage.repositories.reviews import DraftFilter


@dataclass(frozen=True)
class Filters:
    status: str | None = "pending"
    dataset: str | None = None
    lang: str | None = None
    field: str | None = None
    uniqueness: str | None = None
    flag: str | None = None  # a check flag, or "none" for drafts without flags
    score_min: float | None = None  # judge score range: see judge_scores_available()
    score_max: float | None = None

    def draft_filter(self, after: int | None = None) -> DraftFilter:
        flt = parse_filter(None, status=self.status or None, dataset=self.dataset or None, lang=self.lang or None,
                           field=self.field or None, uniqueness=self.uniqueness or None, flag=self.flag or None)
        flt = dataclasses.replace(flt, after_id=after)
        return _with_scores(flt, self.score_min, self.score_max)

    def query(self, **extra: Any) -> str:
        values = {**{k: v for k, v in dataclasses.asdict(self).items() if v not in (None, "")}, **extra}
        if self.status is None:
            values["status"] = ""  # "any status" must survive the round trip (absent means pending)
        return urlencode({k: v for k, v in values.items() if v is not None})


def filters(
    status: str | None = Query("pending", description="pending, approved, rejected, failed; empty: any"),
    dataset: str | None = Query(None), lang: str | None = Query(None, description="en, ja or zh"),
    field: str | None = Query(None), uniqueness: str | None = Query(None),
    flag: str | None = Query(None, description="a check flag, or none for drafts without flags"),
    score_min: float | None = Query(None, description="judge overall score at least"),
    score_max: float | None = Query(None, description="judge overall score at most"),
) -> Filters:
    return Filters(status or None, dataset, lang, field, uniqueness, flag, score_min, score_max)


def judge_scores_available() -> bool:
    """The judge's score filter exists once DraftFilter carries a score range (the judge helper's table)."""
    return "score_min" in {f.name for f in dataclasses.fields(DraftFilter)}


def _with_scores(flt: DraftFilter, low: float | None, high: float | None) -> DraftFilter:
    if low is None and high is None:
        return flt
    if not judge_scores_available():
        raise ValueError("filtering by judge score needs judgements (reasongen judge); none in this version")
    return dataclasses.replace(flt, score_min=low, score_max=high)

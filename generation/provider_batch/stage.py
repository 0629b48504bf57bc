"""What differs between the stages sent through provider batch jobs (drafts, judgements): a small protocol.

Everything else (jobs and request rows stored before sending, upload, polling, retries of errored or
expired requests, the attempt limit, cancel, resume) is the same for every stage and lives in
``workers/provider_*.py``. A stage says which items a batch covers and what to send for each (``prepare``),
how one answer's text is read (``parse``; a ``ValueError`` means unreadable: one repair when ``repairs``,
else a failed result), and how answered items are committed (``write``, with the usual checks). An item is
a record for generation and a draft for the judge (``provider_requests.draft_id``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, Protocol

from generation.records import DraftResult

ReqRow = dict[str, Any]  # a provider_requests row before insert (batch_id, record_id, cache_key, custom_id...)


@dataclass
class Prepared:
    """What to send for a batch: request rows with their JSONL line, followers (same cache key as a row that
    is sent: they get its result and are never sent), items already done (item -> failed), batch params."""

    lines: list[tuple[ReqRow, bytes]] = field(default_factory=list)
    followers: list[ReqRow] = field(default_factory=list)
    done: dict[int, bool] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)


class Stage(Protocol):
    name: str
    repairs: bool  # a reply that does not parse gets one repair request (drafts) or fails (judge, as online)

    def prepare(self, uow: Any, batch: Any, settings: Any) -> Prepared:
        ...

    def parse(self, text: str, finish_reason: str | None) -> DraftResult:
        """One well-formed reply's text as a result; ValueError when it cannot be read."""
        ...

    def write(self, settings: Any, uow: Any, batch: Any, done: list[tuple[Any, DraftResult]]) -> dict[int, bool]:
        """Commit one result per answered request (tokens and batch price filled in here) and copy them to
        followers; returns item -> failed for every item finished."""
        ...


_STAGES: dict[str, str] = {
    "generate": "generation.provider_batch.drafts:DraftStage",
    "judge": "judging.provider_batch:JudgeStage",
}


def stage_for(batch: Any) -> Stage:
    """The judge stage for a judge batch, drafts for everything else (generate, rebuild, retry)."""
    module, _, name = _STAGES["judge" if batch.kind == "judge" else "generate"].partition(":")
    made: Stage = getattr(import_module(module), name)()
    return made

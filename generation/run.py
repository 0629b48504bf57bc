"""Generate drafts for a list of record ids: what one chunk (or an in-process run) calls.

Sub-batches are the unit of submission: a crash loses at most the records in flight, and the cache key
means a re-run skips what was already written. Backends that can ``submit`` work without blocking (the
teacher) get several sub-batches in flight at once, so throughput comes from requests in flight rather
than from large commits. Sub-batches are saved in order; within one, what is done is saved every
``FLUSH_S`` (all of it at once when it is all done by then), so one straggler (a hung request, a chain of
retries) delays only its own draft, not the forty-nine done beside it.

A failed draft does not hold its cache key: the next run tries that record again. A good draft is
never regenerated for the same key unless ``force`` is set.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from typing import Any

from generation.backends.base import Backend
from generation.checks import check_draft
from generation.feed import Gate, submit_records
from generation.records import DraftResult, TrainingView
from generation.restructure import restructure
from generation.templates import Template
from storage.uow import UnitOfWork

DEFAULT_SUB_BATCH = 16
# Backends that overlap requests (the teacher) commit per 50: each sub-batch costs a few transactions (pending
# check, stop check, fenced commit), and its requests are all in flight together anyway, so bigger ones cost no
# latency and lose at most one chunk's worth (the default chunk) in a crash.
SUBMIT_SUB_BATCH = 50
# While a sub-batch still has records in flight, what is done is saved this often: a few transactions per flush,
# against drafts that would otherwise wait for the sub-batch's slowest retry chain (tens of seconds under faults).
FLUSH_S = 2.0


@dataclass
class RunStats:
    done: int = 0
    failed: int = 0
    skipped: int = 0
    shared: int = 0  # records given a copy of an identical record's draft (counted in skipped or failed too)
    flagged: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    stopped: bool = False
    sub_batches: int = 0  # sub-batches saved whole (a budget reservation is released for each)
    started: float = field(default_factory=time.monotonic, repr=False)

    def add(self, result: DraftResult) -> None:
        self.failed += result.failed
        self.done += not result.failed
        self.flagged += bool(result.flags)
        self.prompt_tokens += result.prompt_tokens
        self.completion_tokens += result.completion_tokens
        self.cost_usd += result.cost_usd

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def records_per_s(self) -> float:
        return (self.done + self.failed) / max(self.elapsed_s, 1e-9)


@dataclass
class _Sub:
    views: list[TrainingView]
    keys: dict[int, str]
    results: list[Future[DraftResult]]  # one per view, done when that record's draft is
    # Records whose identical twin (same cache key) is requested in this or an earlier sub-batch: they get a
    # copy of its draft once it is saved, instead of a second request.
    followers: dict[int, str] = field(default_factory=dict)


@dataclass
class _Run:
    """What every sub-batch of one call shares."""

    uow_factory: Callable[[], UnitOfWork]
    backend: Backend
    template: Template
    batch_id: int | None
    force: bool
    notes: dict[int, str]
    stats: RunStats
    on_progress: Callable[[RunStats], None] | None
    gate: Gate | None = None  # shared by the process's chunks: see generation/feed.py
    requested: set[str] = field(default_factory=set)  # cache keys sent in this call


def cache_key(record_hash: str, template: Template, backend: Backend, extra: dict[str, Any] | None = None) -> str:
    parts = [record_hash, template.hash, backend.name, backend.model, backend.cache_params(), extra or {}]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _batched(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def generate_drafts(
    uow_factory: Callable[[], UnitOfWork],
    record_ids: Sequence[int],
    backend: Backend,
    template: Template,
    *,
    batch_id: int | None = None,
    force: bool = False,
    notes: dict[int, str] | None = None,
    sub_batch_size: int | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_progress: Callable[[RunStats], None] | None = None,
    gate: Gate | None = None,
) -> RunStats:
    run = _Run(uow_factory, backend, template, batch_id, force, notes or {}, RunStats(), on_progress, gate)
    size = sub_batch_size or default_sub_batch(backend)
    window = _window(backend, size)
    in_flight: deque[_Sub] = deque()
    for ids in _batched(record_ids, size):
        if should_stop and should_stop():
            run.stats.stopped = True
            break
        in_flight.append(_start(run, ids))
        while len(in_flight) >= window:
            _finish(run, in_flight.popleft())
    while in_flight:  # stopping still saves what is already paid for
        _finish(run, in_flight.popleft())
    return run.stats


def default_sub_batch(backend: Any) -> int:
    """The backend's own preference, else per 50 for backends that overlap requests, else 16."""
    preferred = getattr(backend, "preferred_sub_batch", None)
    return int(preferred) if preferred else SUBMIT_SUB_BATCH if hasattr(backend, "submit") else DEFAULT_SUB_BATCH


def _window(backend: Backend, size: int) -> int:
    """How many sub-batches to keep in flight: enough to fill the backend's concurrency."""
    if not hasattr(backend, "submit"):
        return 1
    return max(1, -(-int(getattr(backend, "max_in_flight", size)) // size))


def _start(run: _Run, ids: Sequence[int]) -> _Sub:
    views, keys = _pending_views(run, ids)
    leaders, followers = _dedupe(run, views, keys)
    prompts = [run.template.render(v, run.notes.get(v.record_id)) for v in leaders]
    gate = run.gate if hasattr(run.backend, "submit") else None
    return _Sub(leaders, keys, submit_records(run.backend, prompts, gate), followers)


def _dedupe(run: _Run, views: list[TrainingView], keys: dict[int, str]) -> tuple[list[TrainingView], dict[int, str]]:
    """One request per cache key: a record identical to one already requested follows it."""
    leaders, followers = [], {}
    for view in views:
        key = keys[view.record_id]
        if key in run.requested:
            followers[view.record_id] = key
        else:
            run.requested.add(key)
            leaders.append(view)
    return leaders, followers


def _finish(run: _Run, sub: _Sub) -> None:
    """Save the sub-batch's drafts as they are done: every ``FLUSH_S`` whatever is done by then, until all are."""
    left = list(zip(sub.views, sub.results, strict=True))
    followers = dict(sub.followers)
    unsaved = {sub.keys[v.record_id] for v in sub.views}  # keys whose leader is in this sub-batch, not yet saved
    while True:
        finished = wait([future for _, future in left], timeout=FLUSH_S).done  # one look: no record falls between
        done = [(view, future.result()) for view, future in left if future in finished]
        left = [(view, future) for view, future in left if future not in finished]
        unsaved -= {sub.keys[view.record_id] for view, _ in done}
        ready = {r: k for r, k in followers.items() if k not in unsaved}  # their leader's draft is saved
        followers = {r: k for r, k in followers.items() if r not in ready}
        if done or ready:
            _save(run, sub, done, ready)
        last = not left and not followers
        run.stats.sub_batches += last
        if (done or ready or last) and run.on_progress:
            run.on_progress(run.stats)
        if last:
            return


def _save(run: _Run, sub: _Sub, done: list[tuple[TrainingView, DraftResult]], followers: dict[int, str]) -> None:
    """One transaction: these drafts, then copies for the followers whose leader is saved (now or before)."""
    for view, result in done:
        result.flags = [*result.flags, *check_draft(view, result)]
    rows = [_draft_values(run, v, sub.keys[v.record_id], r) for v, r in done]
    with run.uow_factory() as uow:
        uow.drafts.add_many(rows)
        copied = uow.drafts.share(followers, run.batch_id, include_failed=True)
        uow.commit()
    for _, result in done:
        run.stats.add(result)
    _count_shared(run.stats, copied)


def _pending_views(run: _Run, ids: Sequence[int]) -> tuple[list[TrainingView], dict[int, str]]:
    with run.uow_factory() as uow:
        views = [restructure(r) for r in uow.records.view_rows(ids)]
        keys = {v.record_id: cache_key(v.content_hash, run.template, run.backend, _extra(v, run)) for v in views}
        done = uow.drafts.drafted(keys)
        copied = {} if run.force else uow.drafts.share({r: k for r, k in keys.items() if r not in done},
                                                        run.batch_id)
        if copied:
            uow.commit()
    todo = [v for v in views if v.record_id not in done and v.record_id not in copied]
    run.stats.skipped += len(done)
    _count_shared(run.stats, copied)
    return todo, keys


def _count_shared(stats: RunStats, copied: dict[int, bool]) -> None:
    stats.shared += len(copied)
    stats.failed += sum(copied.values())
    stats.skipped += sum(not failed for failed in copied.values())


def _extra(view: TrainingView, run: _Run) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if view.record_id in run.notes:
        extra["note"] = run.notes[view.record_id]
    if run.force:
        extra["force"] = uuid.uuid4().hex
    return extra


def _draft_values(run: _Run, view: TrainingView, key: str, result: DraftResult) -> dict[str, Any]:
    backend, template = run.backend, run.template
    return dict(
        record_id=view.record_id, batch_id=run.batch_id, cache_key=key, record_hash=view.content_hash,
        template_name=template.name, template_hash=template.hash, backend=backend.name, model=backend.model,
        params=backend.cache_params(), transformed_input=result.transformed_input, reasoning=result.reasoning,
        response=result.response, raw_text=result.raw_text, error=result.error,
        finish_reason=result.finish_reason, prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens, cost_usd=result.cost_usd, latency_s=result.latency_s,
        flags=list(result.flags), is_fake=backend.is_fake, status="failed" if result.failed else "pending",
    )

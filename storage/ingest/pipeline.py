"""The ingest pipeline: read -> validate -> language -> hash -> bulk upsert, in one transaction.

Each stage is one hook in :class:`Stages`; swap one to change that stage alone. Records stream
through in batches, so memory stays flat; rejections are reported as ``file:line: reason`` and the
valid records are still written (unless ``strict``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from storage.ingest.bulk import BatchResult, BulkWriter
from storage.ingest.hashing import fill_hash
from storage.ingest.langid import fill_language
from storage.ingest.readers import open_reader
from storage.ingest.types import IngestSummary, RawRecord, Rejection, SourceRecord
from storage.ingest.validate import Validator
from storage.uow import UnitOfWork

Report = Callable[[Rejection], None]


@dataclass
class IngestOptions:
    dataset: str
    fmt: str = "auto"
    prune: bool = False
    strict: bool = False
    max_record_bytes: int = 1_000_000
    batch_size: int = 5000
    columns: dict[str, str] = field(default_factory=dict)  # record field -> the file's column (--map)


@dataclass
class Stages:
    """One hook per stage. ``validate`` defaults to a Validator with the options' size limit."""

    read: Callable[[Path, str], Iterable[RawRecord | Rejection]] = open_reader
    validate: Callable[[RawRecord], SourceRecord | Rejection] | None = None
    language: Callable[[SourceRecord], SourceRecord | Rejection] = fill_language
    hash: Callable[[SourceRecord], SourceRecord] = fill_hash


@dataclass
class _Rejections:
    """Collects a batch's rejections and reports them in line order once the batch is written.

    A file of nothing but bad lines never fills a batch, so they are also reported every ``limit``.
    """

    summary: IngestSummary
    report: Report
    limit: int
    pending: list[Rejection] = field(default_factory=list)

    def __call__(self, rejection: Rejection) -> None:
        self.pending.append(rejection)
        if len(self.pending) >= self.limit:
            self.flush()

    def flush(self) -> None:
        for rejection in sorted(self.pending, key=lambda r: (r.file, r.line)):
            self.summary.rejected += 1
            self.report(rejection)
        self.pending.clear()


def ingest_file(
    uow_factory: Callable[[], UnitOfWork],
    path: Path,
    options: IngestOptions,
    *,
    stages: Stages | None = None,
    on_reject: Report = lambda r: None,
    on_progress: Callable[[IngestSummary], None] = lambda s: None,
) -> IngestSummary:
    stages = stages or Stages()
    validate = stages.validate or Validator(options.max_record_bytes, options.columns)
    summary = IngestSummary(dataset=options.dataset, file=str(path))
    rejections = _Rejections(summary, on_reject, options.batch_size)
    items = iter(stages.read(path, options.fmt))  # a missing file or bad format fails before any write
    with uow_factory() as uow:
        dataset_id = uow.records.get_or_create_dataset(options.dataset).id
        with BulkWriter(uow.session, dataset_id) as writer:
            records = _records(items, validate, stages, summary, rejections)
            for result in _write_behind(writer, _batches(records, options.batch_size, rejections)):
                _count(result, summary, rejections)
                on_progress(summary)
            rejections.flush()
            keep = _finish(uow, writer, options, summary)
        if keep:
            uow.commit()
    on_progress(summary)
    return summary


def _records(items: Iterator[RawRecord | Rejection], validate: Callable[[RawRecord], SourceRecord | Rejection],
             stages: Stages, summary: IngestSummary, reject: Report) -> Iterator[SourceRecord]:
    for item in items:
        summary.read += 1
        checked = validate(item) if isinstance(item, RawRecord) else item
        if isinstance(checked, SourceRecord):
            checked = stages.language(checked)
        if isinstance(checked, SourceRecord):
            yield stages.hash(checked)
        else:
            reject(checked)


def _batches(records: Iterator[SourceRecord], size: int, reject: Report) -> Iterator[list[SourceRecord]]:
    """Batches with unique keys; a key repeated inside a batch is rejected here, across batches by the writer."""
    batch: list[SourceRecord] = []
    first_lines: dict[str, int] = {}
    for record in records:
        first = first_lines.setdefault(record.key, record.line)  # type: ignore[arg-type]
        if first != record.line:
            reject(_repeated(record, first))
            continue
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch, first_lines = [], {}
    if batch:
        yield batch


def _repeated(record: SourceRecord, first_line: int) -> Rejection:
    return Rejection(record.file, record.line, f"id {record.key!r} repeated (first on line {first_line})")


def _write_behind(writer: BulkWriter, batches: Iterator[list[SourceRecord]]) -> Iterator[BatchResult]:
    """Write batch k on a helper thread while batch k+1 is parsed: the database works while Python does.

    At most one batch is in flight, so memory stays at two batches. Only the helper thread touches the
    session until the loop ends; the caller's thread takes it back afterwards.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-writer") as pool:
        pending: Future[BatchResult] | None = None
        for batch in batches:
            if pending is not None:
                yield pending.result()
            pending = pool.submit(writer.write, batch)
        if pending is not None:
            yield pending.result()


def _count(result: BatchResult, summary: IngestSummary, rejections: _Rejections) -> None:
    for record, first_line in result.repeats:
        rejections(_repeated(record, first_line))
    summary.inserted += result.inserted
    summary.updated += result.updated
    summary.unchanged += result.unchanged
    summary.restored += result.restored
    rejections.flush()


def _finish(uow: UnitOfWork, writer: BulkWriter, options: IngestOptions, summary: IngestSummary) -> bool:
    """Prune and stamp the dataset; False when nothing may be kept (strict mode saw a bad line)."""
    if options.strict and summary.rejected:
        _nothing_written(summary)
        return False
    if options.prune and summary.rejected:
        summary.notes.append("--prune skipped: a rejected line may hold a record that still exists")
    elif options.prune:
        summary.deleted = writer.prune()
    if summary.inserted or summary.updated or summary.deleted or summary.restored:
        uow.records.touch_dataset(writer.dataset_id, writer.now)
    return True


def _nothing_written(summary: IngestSummary) -> None:
    summary.inserted = summary.updated = summary.unchanged = summary.restored = summary.deleted = 0
    summary.written = False
    summary.notes.append(f"--strict: nothing written because {summary.rejected} line(s) were rejected")

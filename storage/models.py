"""Tables. PostgreSQL is the source of truth for every stage; SQLite is the embedded default.

Schema changes go through Alembic (storage/migrations); never create tables from these models directly.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# JSONB on PostgreSQL (indexable, compact), JSON text on SQLite.
JSONType = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments INTEGER PRIMARY KEY, so BIGINT ids are INTEGER there.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONType, list[Any]: JSONType}


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class Dataset(TimestampMixin, Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str | None] = mapped_column(Text, default=None)


class RecordContent:
    """What a record says; a record and each of its superseded versions carry the same columns."""

    lang: Mapped[str] = mapped_column(String(8))
    instruction: Mapped[str] = mapped_column(Text)
    input: Mapped[str] = mapped_column(Text, default="")
    output: Mapped[str] = mapped_column(Text)
    field: Mapped[str | None] = mapped_column(String(200), default=None)
    uniqueness: Mapped[str | None] = mapped_column(String(50), default=None)
    meta: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    content_hash: Mapped[str] = mapped_column(String(64))


class Record(RecordContent, TimestampMixin, Base):
    """One source record. A changed record keeps its id; its old content moves to record_versions."""

    __tablename__ = "records"
    __table_args__ = (
        UniqueConstraint("dataset_id", "key", name="uq_records_dataset_key"),
        Index("ix_records_dataset_lang_field", "dataset_id", "lang", "field"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(200))  # the record's id in the source file
    version: Mapped[int] = mapped_column(Integer, default=1)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class RecordVersion(RecordContent, Base):
    """A superseded content version of a record (written when ingest sees changed content)."""

    __tablename__ = "record_versions"
    __table_args__ = (UniqueConstraint("record_id", "version", name="uq_record_versions"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("records.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    superseded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# What a batch may run when it finishes (Batch.then).
FOLLOWUPS = ("build", "train")


class Batch(TimestampMixin, Base):
    """A generation job over a set of records, split into chunks."""

    __tablename__ = "batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20), default="generate")  # generate | rebuild | retry
    backend: Mapped[str] = mapped_column(String(50))
    model: Mapped[str] = mapped_column(String(200))
    template_name: Mapped[str] = mapped_column(String(200))
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    filters: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    status_reason: Mapped[str | None] = mapped_column(Text, default=None)
    chunk_size: Mapped[int] = mapped_column(Integer)
    total_records: Mapped[int] = mapped_column(Integer, default=0)
    max_cost_usd: Mapped[float | None] = mapped_column(Float, default=None)
    max_tokens: Mapped[int | None] = mapped_column(BigInteger, default=None)
    then: Mapped[str | None] = mapped_column(String(20), default=None)  # build | train
    followup_enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    # Outbox: set once the follow-up message is on the broker; the sweeper re-sends one decided but never sent.
    followup_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    # The follow-up's own state (pending|running|done|failed) and error, and the lease of the worker running it.
    followup_status: Mapped[str | None] = mapped_column(String(20), default=None)
    followup_error: Mapped[str | None] = mapped_column(Text, default=None)
    followup_owner: Mapped[str | None] = mapped_column(String(200), default=None)
    followup_lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    # The teacher endpoint (OPENAI_BASE_URL) the batch was made for; never the key.
    endpoint: Mapped[str | None] = mapped_column(Text, default=None)
    # What the batch learned about that endpoint (generation/endpoint_state.py): the structured-output mode its
    # requests really ran in, and the adaptive concurrency limit workers last reported, with why it moved.
    response_mode: Mapped[str | None] = mapped_column(Text, default=None)
    concurrency_limit: Mapped[int | None] = mapped_column(Integer, default=None)
    concurrency_reason: Mapped[str | None] = mapped_column(Text, default=None)
    # The spend of work the fence threw away (a lost lease, a cancel): paid for, never saved.
    discarded_usd: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    discarded_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Quality gate: the batch finished but drafts of it still wait for a person; the follow-up fires when none
    # remain pending or on `reasongen release` (judging/gate.py).
    followup_waiting_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class Chunk(TimestampMixin, Base):
    """The unit of work and of retry. Claimed with a lease; the broker only carries its id."""

    __tablename__ = "chunks"
    __table_args__ = (
        UniqueConstraint("batch_id", "seq", name="uq_chunks_batch_seq"),
        Index("ix_chunks_status_lease", "status", "lease_expires_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    record_ids: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    status: Mapped[str] = mapped_column(String(20), default="queued")  # queued|leased|done|failed|cancelled
    lease_owner: Mapped[str | None] = mapped_column(String(200), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    n_done: Mapped[int] = mapped_column(Integer, default=0)
    n_failed: Mapped[int] = mapped_column(Integer, default=0)
    # Hard budgets: the estimated cost of this chunk's sub-batches in flight (zeroed when its lease ends).
    reserved_usd: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    reserved_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class Draft(TimestampMixin, Base):
    """What a model wrote for one record, with its review status.

    ``cache_key`` is the idempotency key: (record content hash, template hash, backend, model, params).
    At most one draft per (record, template, model) is current; older ones stay as history.
    """

    __tablename__ = "drafts"
    __table_args__ = (
        Index(
            "uq_drafts_current",
            "record_id",
            "template_name",
            "model",
            unique=True,
            sqlite_where=text("is_current = 1"),
            postgresql_where=text("is_current"),
        ),
        Index("ix_drafts_status", "status"),
        # Keyset pagination of the web review queue (migration 0005).
        Index("ix_drafts_current_status_id", "status", "id", sqlite_where=text("is_current = 1"),
              postgresql_where=text("is_current")),
        # Records with identical content share a cache key; each still gets its own draft row (migration 0002).
        UniqueConstraint("cache_key", "record_id", name="uq_drafts_key_record"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("records.id", ondelete="CASCADE"), index=True)
    # Indexed: a batch's progress, spend (budgets) and errors are read by batch id.
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id", ondelete="SET NULL"), default=None,
                                                 index=True)
    cache_key: Mapped[str] = mapped_column(String(64))
    # Set when the text was reused from another record's draft with the same cache key (no second request).
    shared_from_id: Mapped[int | None] = mapped_column(BigId, default=None)
    record_hash: Mapped[str] = mapped_column(String(64))
    template_name: Mapped[str] = mapped_column(String(200))
    template_hash: Mapped[str] = mapped_column(String(64))
    backend: Mapped[str] = mapped_column(String(50))
    model: Mapped[str] = mapped_column(String(200))
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    transformed_input: Mapped[str | None] = mapped_column(Text, default=None)
    reasoning: Mapped[str | None] = mapped_column(Text, default=None)
    response: Mapped[str | None] = mapped_column(Text, default=None)
    raw_text: Mapped[str | None] = mapped_column(Text, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    finish_reason: Mapped[str | None] = mapped_column(String(50), default=None)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    latency_s: Mapped[float] = mapped_column(Float, default=0.0)
    flags: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    is_fake: Mapped[bool] = mapped_column(Boolean, default=False)
    is_current: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending|approved|rejected|failed
    edited: Mapped[bool] = mapped_column(Boolean, default=False)
    review_note: Mapped[str | None] = mapped_column(Text, default=None)
    reviewer: Mapped[str | None] = mapped_column(String(200), default=None)
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    # Optimistic concurrency: every review change bumps it; a stale writer gets a conflict.
    version: Mapped[int] = mapped_column(Integer, default=1)


class ReviewEvent(Base):
    """Audit trail: who did what to a draft, when, with the text before and after."""

    __tablename__ = "review_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id", ondelete="CASCADE"), index=True)
    reviewer: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(20))  # approve|reject|edit|reset|auto-approve
    from_status: Mapped[str] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(Text, default=None)
    before: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    after: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Build(Base):
    """A versioned SFT set written from approved drafts, with its manifest and lineage."""

    __tablename__ = "builds"
    # One build per batch follow-up, however often the follow-up is delivered.
    __table_args__ = (Index("uq_builds_batch", "batch_id", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("builds.id", ondelete="SET NULL"), default=None)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id", ondelete="SET NULL"), default=None)
    out_dir: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    n_train: Mapped[int] = mapped_column(Integer, default=0)
    n_eval: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Run(TimestampMixin, Base):
    """A training run of a LoRA adapter on one build."""

    __tablename__ = "runs"
    # One run per batch follow-up; a run is claimed (lease_owner, lease_expires_at) before it trains.
    __table_args__ = (Index("uq_runs_batch", "batch_id", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    build_id: Mapped[int] = mapped_column(ForeignKey("builds.id", ondelete="CASCADE"), index=True)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id", ondelete="SET NULL"), default=None)
    status: Mapped[str] = mapped_column(String(20), default="queued")  # queued|running|completed|failed
    base_model: Mapped[str] = mapped_column(String(500))
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    output_dir: Mapped[str] = mapped_column(Text)
    tokens_per_s: Mapped[float | None] = mapped_column(Float, default=None)
    final_train_loss: Mapped[float | None] = mapped_column(Float, default=None)
    final_eval_loss: Mapped[float | None] = mapped_column(Float, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    lease_owner: Mapped[str | None] = mapped_column(String(200), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class RunMetric(Base):
    """One logged point of a run's loss curve (train or eval)."""

    __tablename__ = "run_metrics"
    __table_args__ = (UniqueConstraint("run_id", "split", "step", name="uq_run_metrics"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    split: Mapped[str] = mapped_column(String(10))  # train | eval
    step: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[float | None] = mapped_column(Float, default=None)
    loss: Mapped[float] = mapped_column(Float)
    learning_rate: Mapped[float | None] = mapped_column(Float, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EvalSample(Base):
    """Base model and adapter answers to the same prompt, side by side."""

    __tablename__ = "eval_samples"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    record_key: Mapped[str | None] = mapped_column(String(200), default=None)
    prompt: Mapped[str] = mapped_column(Text)
    reference: Mapped[str | None] = mapped_column(Text, default=None)
    base_output: Mapped[str] = mapped_column(Text)
    adapter_output: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WorkerHeartbeat(Base):
    """Last sign of life of each worker process, for `reasongen workers` without Flower."""

    __tablename__ = "worker_heartbeats"

    hostname: Mapped[str] = mapped_column(String(200), primary_key=True)
    queues: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    concurrency: Mapped[int] = mapped_column(Integer, default=1)
    pid: Mapped[int | None] = mapped_column(Integer, default=None)
    current_chunk_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    records_processed: Mapped[int] = mapped_column(BigInteger, default=0)
    # Cumulative per worker process: requests, retries, rate_limited (429s), timeouts... of its teacher backends.
    counters: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict, server_default="{}")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# -- web app (issue 15, migration 0005) ------------------------------------------------------------------
class WebUser(Base):
    """A person who signs in to the web app: reviewer or admin. Disabled users keep their history."""

    __tablename__ = "web_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(20))  # reviewer | admin
    password_hash: Mapped[str | None] = mapped_column(String(200), default=None)
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WebSession(Base):
    """A signed-in browser: the cookie holds a random token, the table only its SHA-256."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("web_users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ApiToken(Base):
    """A bearer token for scripts (`reasongen users token NAME`); stored as its SHA-256 only."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("web_users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class ReviewRequirement(Base):
    """How many independent reviewer decisions a dataset's drafts need (absent: one)."""

    __tablename__ = "review_requirements"

    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    required_decisions: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class ReviewAssignment(Base):
    """One reviewer's lease on, then decision about, one draft of a multi-reviewer dataset."""

    __tablename__ = "review_assignments"
    __table_args__ = (
        UniqueConstraint("draft_id", "reviewer", name="uq_review_assignments_draft_reviewer"),
        Index("ix_review_assignments_reviewer", "reviewer", "draft_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id", ondelete="CASCADE"))
    reviewer: Mapped[str] = mapped_column(String(200))
    leased_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    decision: Mapped[str | None] = mapped_column(String(20), default=None)  # approve | reject
    note: Mapped[str | None] = mapped_column(Text, default=None)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Judgement(Base):
    """A judge's scores for one draft under one rubric. ``cache_key`` = (draft text, judge, model, rubric hash):
    the same judge never scores the same draft twice with the same rubric (a failed judgement gives its key up)."""

    __tablename__ = "judgements"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    draft_id: Mapped[int] = mapped_column(BigId, ForeignKey("drafts.id", ondelete="CASCADE"), index=True)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id", ondelete="SET NULL"), default=None,
                                                 index=True)
    cache_key: Mapped[str] = mapped_column(String(64), unique=True)
    backend: Mapped[str] = mapped_column(String(50))
    model: Mapped[str] = mapped_column(String(200))
    rubric_name: Mapped[str] = mapped_column(String(200))
    rubric_hash: Mapped[str] = mapped_column(String(64))
    # criterion -> {"score": 1..5, "reason": one sentence}
    scores: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    overall: Mapped[float | None] = mapped_column(Float, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    raw_text: Mapped[str | None] = mapped_column(Text, default=None)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    latency_s: Mapped[float] = mapped_column(Float, default=0.0)
    is_fake: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Policy(TimestampMixin, Base):
    """Scores and check flags -> approve / reject / leave for people. ``hash`` names this exact definition in the
    audit trail (reviewer ``policy:NAME@hash``)."""

    __tablename__ = "policies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    approve_min: Mapped[float] = mapped_column(Float)
    reject_max: Mapped[float] = mapped_column(Float)
    require_no_flags: Mapped[bool] = mapped_column(Boolean, default=False)
    judge_backend: Mapped[str | None] = mapped_column(String(50), default=None)
    judge_model: Mapped[str | None] = mapped_column(String(200), default=None)
    rubric_name: Mapped[str | None] = mapped_column(String(200), default=None)
    hash: Mapped[str] = mapped_column(String(64))


class ProviderJob(TimestampMixin, Base):
    """One provider batch job (OpenAI ``/v1/batches``) carrying part of a batch's requests (issue 14).

    The row and its requests are written before anything is sent; ``state`` says how far submission got
    (new -> uploaded -> submitted -> done), so a restarted poller finishes the step without repeating one.
    ``status`` is the provider's own (validating, in_progress, completed, expired, cancelled, failed...)."""

    __tablename__ = "provider_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[str] = mapped_column(String(20), default="new", index=True)
    status: Mapped[str | None] = mapped_column(String(30), default=None)
    endpoint: Mapped[str | None] = mapped_column(Text, default=None)
    model: Mapped[str] = mapped_column(String(200))
    input_file_id: Mapped[str | None] = mapped_column(String(200), default=None)
    provider_batch_id: Mapped[str | None] = mapped_column(String(200), default=None, unique=True)
    output_file_id: Mapped[str | None] = mapped_column(String(200), default=None)
    error_file_id: Mapped[str | None] = mapped_column(String(200), default=None)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    completed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    polls: Mapped[int] = mapped_column(Integer, default=0)
    next_poll_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)


class ProviderRequest(Base):
    """One line of a provider job: ``custom_id`` -> record (and draft, for a judge request), with the exact
    request body sent.

    state: sent (in a job, no answer yet) | done (draft written) | retry (errored or expired: goes into the
    next job) | resent (its retry is in a later job) | failed (out of attempts: a failed draft was written)."""

    __tablename__ = "provider_requests"
    __table_args__ = (Index("ix_provider_requests_job_state", "job_id", "state"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("provider_jobs.id", ondelete="CASCADE"))
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), index=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("records.id", ondelete="CASCADE"), index=True)
    # The judge stage's item: the draft this request scores (NULL for a generation request, whose item is the record).
    draft_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("drafts.id", ondelete="CASCADE"), default=None)
    custom_id: Mapped[str] = mapped_column(String(100), unique=True)
    cache_key: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    kind: Mapped[str] = mapped_column(String(10), default="draft")  # draft | repair
    body: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    state: Mapped[str] = mapped_column(String(20), default="sent")
    error: Mapped[str | None] = mapped_column(Text, default=None)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)

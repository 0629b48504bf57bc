"""One typed settings object, read at entry points only (CLI commands, worker start-up)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DB_FILE = "reasongen.db"

# USD per 1M tokens (prompt, completion). Unknown models cost 0 and say so in the status.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
}


def _env(name: str, *more: str) -> AliasChoices:
    return AliasChoices(name, *more)


class Settings(BaseSettings):
    """Every knob, with its environment variable. CLI options override these per command."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True, env_ignore_empty=True)

    database_url: str = Field(
        default_factory=lambda: f"sqlite:///{Path.cwd() / DEFAULT_DB_FILE}",
        validation_alias=_env("REASONGEN_DATABASE_URL"),
    )
    broker_url: str | None = Field(default=None, validation_alias=_env("REASONGEN_BROKER_URL"))
    redis_url: str | None = Field(default=None, validation_alias=_env("REASONGEN_REDIS_URL"))

    openai_api_key: SecretStr | None = Field(default=None, validation_alias=_env("OPENAI_API_KEY"))
    openai_base_url: str | None = Field(default=None, validation_alias=_env("OPENAI_BASE_URL"))
    teacher_model: str = Field(default="gpt-4o-mini", validation_alias=_env("REASONGEN_TEACHER_MODEL"))
    teacher_concurrency: int = Field(default=64, ge=1, validation_alias=_env("REASONGEN_TEACHER_CONCURRENCY"))
    teacher_rpm: int | None = Field(default=None, ge=1, validation_alias=_env("REASONGEN_TEACHER_RPM"))
    teacher_tpm: int | None = Field(default=None, ge=1, validation_alias=_env("REASONGEN_TEACHER_TPM"))
    # No RPM/TPM given: learn the request rate from the server's 429s (generation/ratelearn.py).
    teacher_learn_rate: bool = Field(default=True, validation_alias=_env("REASONGEN_TEACHER_LEARN_RATE"))
    teacher_timeout_s: float = Field(default=120.0, gt=0, validation_alias=_env("REASONGEN_TEACHER_TIMEOUT"))
    teacher_max_retries: int = Field(default=6, ge=0, validation_alias=_env("REASONGEN_TEACHER_MAX_RETRIES"))
    # Self-hosted teachers (generation/concurrency.py, breaker.py, context.py): the concurrency above is the
    # ceiling; the limit starts at the initial value and follows the server's latency unless adaptive is off.
    teacher_adaptive: bool = Field(default=True, validation_alias=_env("REASONGEN_TEACHER_ADAPTIVE"))
    teacher_initial_concurrency: int = Field(default=4, ge=1,
                                             validation_alias=_env("REASONGEN_TEACHER_INITIAL_CONCURRENCY"))
    teacher_breaker_threshold: int = Field(default=8, ge=1, validation_alias=_env("REASONGEN_TEACHER_BREAKER"))
    teacher_context_length: int | None = Field(default=None, ge=256,
                                               validation_alias=_env("REASONGEN_TEACHER_CONTEXT_LENGTH"))
    teacher_max_tokens: int = Field(default=1024, ge=16, validation_alias=_env("REASONGEN_TEACHER_MAX_TOKENS"))
    prices: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES), validation_alias=_env("REASONGEN_PRICES")
    )

    local_model: str = Field(default="microsoft/phi-2", validation_alias=_env("REASONGEN_LOCAL_MODEL"))
    local_batch_size: int = Field(default=8, ge=1, validation_alias=_env("REASONGEN_LOCAL_BATCH_SIZE"))

    templates_dir: Path | None = Field(default=None, validation_alias=_env("REASONGEN_TEMPLATES_DIR"))
    # A tokenizer.json (or a model folder holding one) for token estimates: dry-run cost, budgets, rate limits.
    # Unset: a local model's own tokenizer, else a script-aware estimate (generation/tokens.py).
    tokenizer_path: Path | None = Field(default=None, validation_alias=_env("REASONGEN_TOKENIZER_PATH"))
    max_record_bytes: int = Field(default=1_000_000, ge=1, validation_alias=_env("REASONGEN_MAX_RECORD_BYTES"))
    chunk_size: int = Field(default=50, ge=1, validation_alias=_env("REASONGEN_CHUNK_SIZE"))
    # `generate` without a broker, with a teacher: processes sharing its slots (0: one per 128 slots, at most the
    # CPU count and 4; workers/inprocess_fork.py says why one interpreter is not enough at hundreds in flight).
    inprocess_processes: int = Field(default=0, ge=0, validation_alias=_env("REASONGEN_INPROCESS_PROCESSES"))
    reviewer: str | None = Field(default=None, validation_alias=_env("REASONGEN_REVIEWER"))

    # Job queue (workers/). The visibility timeout must outlast the chunk time limit, or Redis would hand a
    # running chunk to a second worker; a live chunk's heartbeat renews its lease every heartbeat interval.
    # Records per commit inside a chunk; unset: the backend's preferred size.
    sub_batch_size: int | None = Field(default=None, ge=1, validation_alias=_env("REASONGEN_SUB_BATCH_SIZE"))
    lease_s: float = Field(default=300.0, gt=0, validation_alias=_env("REASONGEN_LEASE_SECONDS"))
    chunk_time_limit_s: int = Field(default=3600, ge=1, validation_alias=_env("REASONGEN_CHUNK_TIME_LIMIT"))
    visibility_timeout_s: int = Field(default=7200, ge=1, validation_alias=_env("REASONGEN_VISIBILITY_TIMEOUT"))
    max_attempts: int = Field(default=3, ge=1, validation_alias=_env("REASONGEN_MAX_ATTEMPTS"))
    # `rebuild` regenerates a draft rejected with a note (a reviewer's, or a policy's judge reasons) at most this
    # many times per record, template and model; then the record waits for a person (unattended loops stop paying).
    max_regenerations: int = Field(default=3, ge=1, validation_alias=_env("REASONGEN_MAX_REGENERATIONS"))
    # A sweep is a few indexed queries; every 10 s a dead worker's chunks (silent 3 heartbeats) move on soon.
    sweep_interval_s: float = Field(default=10.0, gt=0, validation_alias=_env("REASONGEN_SWEEP_INTERVAL"))
    requeue_after_s: float = Field(default=120.0, gt=0, validation_alias=_env("REASONGEN_REQUEUE_AFTER"))
    heartbeat_interval_s: float = Field(default=10.0, gt=0, validation_alias=_env("REASONGEN_HEARTBEAT_INTERVAL"))
    queue_prefix: str = Field(default="", validation_alias=_env("REASONGEN_QUEUE_PREFIX"))
    worker_imports: list[str] = Field(default_factory=list, validation_alias=_env("REASONGEN_WORKER_IMPORTS"))

    # Provider batch mode (generation/provider_batch, workers/provider_jobs.py): per-file limits, the price
    # factor of batch jobs, how often open jobs are polled (backing off from min to max while nothing changes),
    # and the record count from which --mode auto picks batch.
    batch_max_requests: int = Field(default=50_000, ge=1, validation_alias=_env("REASONGEN_BATCH_MAX_REQUESTS"))
    batch_max_bytes: int = Field(default=200 * 2**20, ge=1024, validation_alias=_env("REASONGEN_BATCH_MAX_BYTES"))
    batch_discount: float = Field(default=0.5, gt=0, le=1, validation_alias=_env("REASONGEN_BATCH_DISCOUNT"))
    batch_poll_min_s: float = Field(default=30.0, gt=0, validation_alias=_env("REASONGEN_BATCH_POLL_MIN"))
    batch_poll_max_s: float = Field(default=600.0, gt=0, validation_alias=_env("REASONGEN_BATCH_POLL_MAX"))
    batch_auto_threshold: int = Field(default=2000, ge=1, validation_alias=_env("REASONGEN_BATCH_AUTO_THRESHOLD"))

    def api_key(self) -> str | None:
        return self.openai_api_key.get_secret_value() if self.openai_api_key else None

    def effective_redis_url(self) -> str | None:
        """Redis for the shared rate limiter: explicit, else the broker when it is Redis."""
        if self.redis_url:
            return self.redis_url
        return self.broker_url if is_redis_url(self.broker_url) else None


def is_redis_url(url: str | None) -> bool:
    """The one test for a Redis URL (the broker's priority queues, the limiter, result backend)."""
    return (url or "").startswith(("redis://", "rediss://"))


def load_settings(**overrides: object) -> Settings:
    """Read the environment, then apply non-None CLI overrides."""
    base = Settings()
    clean = {k: v for k, v in overrides.items() if v is not None}
    return base.model_copy(update=clean) if clean else base

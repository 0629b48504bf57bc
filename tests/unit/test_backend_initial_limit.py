"""A worker joining a running batch starts its teacher where the batch's workers have probed the endpoint to."""

from __future__ import annotations

from reasongen.settings import Settings
from workers.batches import BatchSpec
from workers.chunks import BackendSource


def spec(limit: int | None, backend: str = "teacher") -> BatchSpec:
    return BatchSpec(7, "generate", backend, "m", "reason", {}, None, None, "http://127.0.0.1:9/v1", limit)


def test_a_teacher_starts_at_the_limit_the_batch_recorded() -> None:
    """Before: every fresh worker started at 4 (bench/chaos: a worker restarted in the slow minute ramped for ~10 s
    at 1.5 s a request while the two others held 64)."""
    backend = BackendSource(Settings(broker_url=None)).get(spec(48))
    assert backend.throttle.initial == 48


def test_without_a_recorded_limit_the_cold_start_stays() -> None:
    settings = Settings(broker_url=None)
    backend = BackendSource(settings).get(spec(None))
    assert backend.throttle.initial == settings.teacher_initial_concurrency


def test_other_backends_are_not_given_a_teacher_option() -> None:
    assert BackendSource(Settings(broker_url=None)).get(spec(48, backend="fake")) is not None

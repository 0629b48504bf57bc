"""/metrics for Prometheus: request counters from a middleware, pipeline figures read at scrape time.

The pipeline figures (drafts by status and decision source, tokens, cost, queue depths, chunk durations,
reviewer decisions) are read from PostgreSQL when Prometheus scrapes, so every web replica reports the same
truth and nothing is counted twice. Scrape with a bearer token (docs in README, "Metrics").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import case, func, literal_column, select

from reasongen.bootstrap import Wiring
from storage.models import Chunk, Draft, ReviewEvent
from web.security import wiring_of
from workers import broker

router = APIRouter(include_in_schema=False)
REGISTRY = CollectorRegistry()
REQUESTS = Counter("reasongen_web_requests", "HTTP requests served", ["method", "route", "status"],
                   registry=REGISTRY)
LATENCY = Histogram("reasongen_web_request_seconds", "HTTP request time in the app", ["route"], registry=REGISTRY,
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))


def observe_request(request: Request, status: int, seconds: float) -> None:
    route = request.scope.get("route")
    name = getattr(route, "path", "unmatched")  # the route template, never the raw path (bounded labels)
    REQUESTS.labels(request.method, name, str(status)).inc()
    LATENCY.labels(name).observe(seconds)


class PipelineCollector:
    def __init__(self, wiring: Wiring):
        self.wiring = wiring

    def collect(self) -> Iterator[Metric]:
        with self.wiring.uow() as uow:
            s = uow.session
            drafts = s.execute(select(Draft.status, func.count()).where(Draft.is_current.is_(True))
                               .group_by(Draft.status)).all()
            spend = s.execute(select(func.coalesce(func.sum(Draft.prompt_tokens), 0),
                                     func.coalesce(func.sum(Draft.completion_tokens), 0),
                                     func.coalesce(func.sum(Draft.cost_usd), 0.0))).one()
            decisions = s.execute(select(ReviewEvent.action, _source(), func.count())
                                  .group_by(ReviewEvent.action, literal_column("source"))).all()
            per_reviewer = s.execute(select(ReviewEvent.reviewer, ReviewEvent.action, func.count())
                                     .where(ReviewEvent.action.in_(("approve", "reject")))
                                     .group_by(ReviewEvent.reviewer, ReviewEvent.action)).all()
            chunks = s.execute(select(Chunk.status, func.count()).group_by(Chunk.status)).all()
            durations = [r for r in s.execute(select(Chunk.started_at, Chunk.finished_at)
                                              .where(Chunk.finished_at.is_not(None), Chunk.started_at.is_not(None))
                                              .order_by(Chunk.id.desc()).limit(1000))]
            events = [(w.hostname, name, n) for w in uow.heartbeats.all()
                      for name, n in sorted((w.counters or {}).items())]
        yield _gauge("reasongen_drafts", "Current drafts by review status", ["status"], drafts)
        yield _counter("reasongen_tokens", "Tokens used by drafts", ["kind"],
                       [("prompt", spend[0]), ("completion", spend[1])])
        yield _counter("reasongen_cost_usd", "Estimated cost of drafts (USD)", [], [((), spend[2])])
        yield _counter("reasongen_review_decisions", "Review changes by action and source", ["action", "source"],
                       decisions)
        yield _counter("reasongen_reviewer_decisions", "Approvals and rejections by reviewer",
                       ["reviewer", "action"], per_reviewer)
        yield _gauge("reasongen_chunks", "Chunks by status", ["status"], chunks)
        secs = [(b - a).total_seconds() for a, b in durations if a is not None and b is not None]
        yield _gauge("reasongen_chunk_seconds_avg", "Mean duration of the last 1000 finished chunks", [],
                     [((), sum(secs) / len(secs) if secs else 0.0)])
        yield _counter("reasongen_teacher_events", "What each worker's teacher backends did since the worker "
                       "started: requests, retries, rate_limited (429s), timeouts, repairs...", ["worker", "event"],
                       events)
        depths = broker.queue_depths(self.wiring.settings) if self.wiring.settings.broker_url else None
        yield _gauge("reasongen_queue_depth", "Messages waiting on the broker", ["queue"], (depths or {}).items())


def _source() -> Any:
    # Who decided: a person, the judge's policy ("policy:NAME@hash"), agreeing reviewers, or auto-approve.
    return case((ReviewEvent.reviewer.like("policy:%"), "policy"),
                (ReviewEvent.reviewer.like("consensus:%"), "consensus"),
                (ReviewEvent.action == "auto-approve", "auto"), else_="person").label("source")


def _gauge(name: str, doc: str, labels: list[str], rows: Any) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for *keys, value in rows:
        family.add_metric([str(k) for k in (keys[0] if keys and isinstance(keys[0], tuple) else keys)], float(value))
    return family


def _counter(name: str, doc: str, labels: list[str], rows: Any) -> Metric:
    family = CounterMetricFamily(name, doc, labels=labels)
    for *keys, value in rows:
        family.add_metric([str(k) for k in (keys[0] if keys and isinstance(keys[0], tuple) else keys)], float(value))
    return family


@router.get("/metrics")
def metrics(request: Request) -> Response:
    registry = CollectorRegistry()
    registry.register(PipelineCollector(wiring_of(request)))
    body = generate_latest(REGISTRY) + generate_latest(registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)

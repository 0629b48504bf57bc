"""The sweeper: gives expired leases another try (or fails the chunk after N attempts) and re-sends chunks
whose message the broker lost, for example after Redis restarted empty.

Every change is a conditional UPDATE, so several sweepers (one per worker, plus `reasongen sweep`) can run at
once and each chunk is re-sent by one of them. A chunk re-sent twice is harmless: the lease lets one worker in
and the cache key skips records already drafted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from reasongen.bootstrap import Wiring
from storage.uow import UnitOfWork
from workers import broker, dispatch
from workers.batches import FollowUp, finalize, utcnow
from workers.chunks import next_state

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    requeued: list[int] = field(default_factory=list)  # lease expired, another attempt
    failed: list[int] = field(default_factory=list)  # lease expired too often: poison
    cancelled: list[int] = field(default_factory=list)  # lease expired in a batch that was stopped
    resent: list[int] = field(default_factory=list)  # queued, but the broker did not hold the message
    followups: list[FollowUp] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[int]]:
        return dict(requeued=self.requeued, failed=self.failed, cancelled=self.cancelled, resent=self.resent)


def sweep(wiring: Wiring, *, batch_id: int | None = None, force: bool = False, send: bool = True,
          broker_lost: bool = False) -> SweepReport:
    """One pass. ``force`` (resume) re-sends every queued chunk missing from the broker, however recent;
    ``broker_lost``: the caller already found the broker's data gone (``broker.data_lost`` answers once)."""
    report = SweepReport()
    worker_gone = _orphaned(wiring, batch_id)
    _expired(wiring, batch_id, report)
    _exhausted(wiring, batch_id, report)
    _lost(wiring, batch_id, force or broker_lost, report, worker_gone)
    if batch_id is None:  # provider batch jobs (--mode batch): poll the due ones (workers/provider_jobs.py)
        _provider_jobs(wiring)
    if send and wiring.settings.broker_url:
        _unsent_followups(wiring, report)
        _expired_followups(wiring, report)
        _send(wiring, report)
        if batch_id is None:  # follow-ups held for review whose drafts people have since decided (web, CLI)
            from judging.gate import release_ready

            release_ready(wiring)
    return report


def _provider_jobs(wiring: Wiring) -> None:
    from workers import provider_jobs

    try:
        provider_jobs.poll(wiring)
    except Exception:  # noqa: BLE001 - the provider or the database is away: the next sweep polls again
        log.warning("polling provider batch jobs failed; next sweep tries again", exc_info=True)


def _orphaned(wiring: Wiring, batch_id: int | None) -> bool:
    """End at once the leases that nothing runs any more, instead of waiting for them to run out
    (REASONGEN_LEASE_SECONDS, 5 minutes):

    - leases of workers that are gone: a lease owner names its worker and pid (``new_owner``), and a worker
      whose heartbeat row went stale, or that restarted under the same name with another pid, holds nothing
      (a SIGKILLed worker's chunks, a killed train worker's follow-up and run);
    - chunk leases their lease heartbeat stopped touching (``workers.chunks.heartbeat`` touches a running
      chunk every heartbeat interval, whatever its sub-batches are doing): a live worker that stopped running
      the chunk, e.g. a task that gave the chunk up during a database outage and whose retry message then
      went down with another worker. (Only for leases of a worker we know, as above: an in-process run's
      lease runs until it expires.)

    Silence counts after three heartbeat intervals, and not at all just after the database restarted (the
    heartbeats could not be written while it was down). True when a worker that is gone held a lease."""
    now = utcnow()
    stale_before = now - timedelta(seconds=3 * wiring.settings.heartbeat_interval_s)
    with wiring.uow() as uow:
        if _database_started_after(uow, stale_before):  # only a new pid under a known name still counts
            stale_before = datetime.min.replace(tzinfo=timezone.utc)
        beats = {w.hostname: (w.pid, _aware(w.last_seen)) for w in uow.heartbeats.all()}
        leases = [("chunks", i, o) for i, o in uow.chunks.leases(batch_id)]
        if batch_id is None:
            leases += [("followups", i, o) for i, o in uow.followups.owners()]
            leases += [("runs", i, o) for i, o in uow.runs.owners()]
        gone = [(repo, i, o) for repo, i, o in leases if _dead(o, beats, stale_before)]
        silent = set(uow.chunks.silent_leases(stale_before, batch_id)) - {(i, o) for _, i, o in gone}
        gone += [("chunks", i, o) for i, o in sorted(silent) if o.partition(":")[0] in beats]
        for repo, key, owner in gone:
            getattr(uow, repo).expire_lease(key, owner, now)
        uow.commit()
    if gone:
        log.warning("sweeper: leases of workers that are gone ended: %s", [(r, i) for r, i, _ in gone])
    return any(_dead(o, beats, stale_before) for _, _, o in gone)


def _database_started_after(uow: UnitOfWork, moment: datetime) -> bool:
    """PostgreSQL restarted since ``moment``: heartbeats written before it went down look stale for a while."""
    if uow.session.get_bind().dialect.name != "postgresql":
        return False
    started = uow.session.execute(text("SELECT pg_postmaster_start_time()")).scalar_one()
    return bool(_aware(started) > moment)


def _dead(owner: str, beats: dict, stale_before: datetime) -> bool:  # type: ignore[type-arg]
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    beat = beats.get(host)
    if beat is None or beat[0] is None or not pid.isdigit():
        return False  # not a worker we know of (an in-process run, or a worker that never beat): its lease runs
    return bool(beat[0] != int(pid) or beat[1] < stale_before)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def _expired(wiring: Wiring, batch_id: int | None, report: SweepReport) -> None:
    now = utcnow()
    with wiring.uow() as uow:
        expired = uow.chunks.expired_leases(now, batch_id)
    for chunk_id, owner_batch in expired:
        with wiring.uow() as uow:
            batch = uow.batches.lock(owner_batch)
            chunk = uow.chunks.get(chunk_id)
            if chunk is None or chunk.status != "leased":
                continue
            state = next_state(batch.status, chunk.attempts, wiring.settings.max_attempts)
            if state == "queued":
                if uow.chunks.requeue(chunk_id, now, expired_before=now):
                    report.requeued.append(chunk_id)
            elif uow.chunks.finish(chunk_id, None, now, expired_before=now, status=state, finished_at=now,
                                    last_error=_why(chunk.attempts)):
                (report.failed if state == "failed" else report.cancelled).append(chunk_id)
                report.followups.extend(filter(None, [finalize(uow, owner_batch, now)]))
            uow.commit()


def _exhausted(wiring: Wiring, batch_id: int | None, report: SweepReport) -> None:
    """A queued chunk with no attempts left can never be claimed: fail it (with the reason) instead of
    re-sending it for ever."""
    now, most = utcnow(), wiring.settings.max_attempts
    with wiring.uow() as uow:
        found = uow.chunks.exhausted_queued(most, batch_id)
    for chunk_id, owner_batch in found:
        with wiring.uow() as uow:
            uow.batches.lock(owner_batch)
            why = (f"queued with no attempts left ({most} of REASONGEN_MAX_ATTEMPTS={most} used); "
                   f"re-run its records with: reasongen retry-failed {owner_batch}")
            if uow.chunks.fail_exhausted(chunk_id, most, now, why):
                report.failed.append(chunk_id)
                report.followups.extend(filter(None, [finalize(uow, owner_batch, now)]))
            uow.commit()


def _why(attempts: int) -> str:
    return (f"lease expired on attempt {attempts} (worker killed, hung, or slower than REASONGEN_LEASE_SECONDS "
            "per sub-batch)")


def _lost(wiring: Wiring, batch_id: int | None, force: bool, report: SweepReport, worker_gone: bool = False) -> None:
    """Re-send queued chunks the broker does not hold. With Redis the sweeper can see what it holds, so a
    chunk is re-sent after ``broker.RESERVATION_GRACE_S``; with another broker, after ``requeue_after_s``.

    ``worker_gone``: this sweep found a worker that is gone. The messages it had reserved but not yet run (a
    retry waiting out its countdown, one waiting for a free thread) are in the broker's reservations, which do
    not say whose they are: every queued chunk held only by a reservation is re-sent now, however recent, not
    after the grace (bench/chaos: 45 s more for a chunk whose retry message went down with a SIGKILLed worker).
    A live worker's copy then finds the chunk taken or done: the lease lets one delivery in."""
    now, settings = utcnow(), wiring.settings
    if settings.broker_url and broker.data_lost(settings):
        force = True  # Redis came back empty: every message it held is gone, however recent
    knowable = bool(settings.broker_url) and broker.is_redis(settings)
    window = min(settings.requeue_after_s, broker.RESERVATION_GRACE_S) if knowable else settings.requeue_after_s
    reservations_count = not (worker_gone and knowable)
    cutoff = now if force or not reservations_count else now - timedelta(seconds=window)
    with wiring.uow() as uow:
        candidates = uow.chunks.queued_before(cutoff, batch_id)
    if not candidates:
        return
    held = broker.held_chunk_ids(settings, window if reservations_count else 0.0) if settings.broker_url else set()
    sending = set(report.requeued)  # re-queued by this sweep a moment ago: their message is not out yet
    lost = [c for c in candidates if c not in sending and (held is None or c not in held)]
    with wiring.uow() as uow:  # one statement for all: after Redis restarted empty that is every queued chunk
        report.resent.extend(uow.chunks.resend_queued(lost, now, enqueued_before=cutoff))
        uow.commit()


def _unsent_followups(wiring: Wiring, report: SweepReport) -> None:
    now = utcnow()
    cutoff = now - timedelta(seconds=wiring.settings.requeue_after_s)
    with wiring.uow() as uow:
        candidates = uow.followups.unsent(cutoff)
    for batch_id, then in candidates:
        with wiring.uow() as uow:
            if uow.followups.reclaim(batch_id, cutoff, now):
                report.followups.append((batch_id, then))
            uow.commit()


def _expired_followups(wiring: Wiring, report: SweepReport) -> None:
    """A follow-up whose runner died (a train worker killed mid-build or mid-training) goes out again; the
    next delivery claims it and resumes the run from its last checkpoint."""
    now = utcnow()
    with wiring.uow() as uow:
        candidates = uow.followups.expired(now)
    for batch_id, then in candidates:
        with wiring.uow() as uow:
            if uow.followups.release_expired(batch_id, now):
                report.followups.append((batch_id, then))
            uow.commit()


def _send(wiring: Wiring, report: SweepReport) -> None:
    by_backend: dict[str, list[int]] = {}
    chunk_ids = report.requeued + report.resent
    with wiring.uow() as uow:
        backends = uow.chunks.backends_of(chunk_ids)
    for chunk_id in chunk_ids:
        by_backend.setdefault(backends.get(chunk_id) or "fake", []).append(chunk_id)
    for backend, ids in by_backend.items():
        dispatch.send_chunks(wiring.settings, ids, backend)
    for followup in report.followups:
        dispatch.hand_out_followup(wiring, *followup)
    if report.requeued or report.resent or report.failed:
        log.warning("sweeper: %s", report.as_dict())

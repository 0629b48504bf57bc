"""Monitoring pages (batches, workers, builds, runs) and their API; pages poll fragments with htmx."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from reasongen.bootstrap import Wiring
from web.accounts import Principal
from web.charts import Series, loss_chart
from web.desk import page
from web.security import admin, wiring_of
from workers import batches, monitor, provider_resume, sweeper

router = APIRouter()


# -- data (shared by pages and API) ---------------------------------------------------------------
def batch_rows(request: Request, limit: int = 20) -> list[dict[str, Any]]:
    wired = wiring_of(request)
    rows = monitor.recent_summaries(wired, limit)
    with wired.uow() as uow:
        for row in rows:
            batch = uow.batches.get(row["batch"])
            row["followup_status"] = getattr(batch, "followup_status", None)  # set by workers (issue 14)
            row["followup_error"] = getattr(batch, "followup_error", None)
            # Held by the quality gate until its drafts are reviewed (judging/gate.py); admins may release it.
            row["followup_held"] = bool(getattr(batch, "followup_waiting_at", None)) and not batch.followup_enqueued_at
    return with_unserved(wired, rows)


def with_unserved(wired: Wiring, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each summary gains ``no_worker_on``, as `reasongen status --json` gives it: the queue its queued chunks wait
    on when no live worker consumes it (the page would otherwise say "running" for ever), else None."""
    unserved = monitor.unserved(wired, rows)
    return [{**row, "no_worker_on": unserved.get(row["batch"])} for row in rows]


def build_rows(request: Request) -> list[dict[str, Any]]:
    with wiring_of(request).uow() as uow:
        found = uow.builds.list()
        return [{"id": b.id, "dataset_id": b.dataset_id, "parent_id": b.parent_id, "batch_id": b.batch_id,
                 "created_at": b.created_at, "n_train": b.n_train, "n_eval": b.n_eval,
                 "sha256": b.manifest_sha256, "out_dir": b.out_dir,
                 "diff": {k: len(v) for k, v in (b.manifest.get("diff") or {}).items()},
                 "diff_keys": {k: v[:5] for k, v in (b.manifest.get("diff") or {}).items()}} for b in found]


def run_rows(request: Request) -> list[dict[str, Any]]:
    with wiring_of(request).uow() as uow:
        return [{"id": r.id, "build_id": r.build_id, "status": r.status, "base_model": r.base_model,
                 "final_train_loss": r.final_train_loss, "final_eval_loss": r.final_eval_loss,
                 "tokens_per_s": r.tokens_per_s, "error": r.error, "started_at": r.started_at,
                 "finished_at": r.finished_at} for r in uow.runs.list()]


def run_metrics(request: Request, run_id: int) -> list[dict[str, Any]]:
    with wiring_of(request).uow() as uow:
        uow.runs.get(run_id)
        return [{"split": m.split, "step": m.step, "epoch": m.epoch, "loss": m.loss,
                 "learning_rate": m.learning_rate} for m in uow.runs.metrics(run_id)]


# -- API -----------------------------------------------------------------------------------------
@router.get("/api/batches", tags=["monitor"], summary="Recent batches: progress, rate, ETA, tokens, cost, errors")
def api_batches(request: Request, limit: int = Query(20, ge=1, le=200)) -> list[dict[str, Any]]:
    return batch_rows(request, limit)


@router.get("/api/batches/{batch_id}", tags=["monitor"], summary="One batch's progress")
def api_batch(request: Request, batch_id: int) -> dict[str, Any]:
    wired = wiring_of(request)
    return with_unserved(wired, [monitor.batch_summary(wired, batch_id)])[0]


@router.post("/api/batches/{batch_id}/cancel", tags=["monitor"], summary="Cancel a batch (admins)")
def api_cancel(request: Request, batch_id: int, _: Principal = Depends(admin)) -> dict[str, Any]:
    return {"batch": batch_id, "message": provider_resume.cancel_batch(wiring_of(request), batch_id)}


@router.post("/api/batches/{batch_id}/resume", tags=["monitor"], summary="Resume a stopped or cancelled batch "
                                                                         "(admins; needs a broker)")
def api_resume(request: Request, batch_id: int, _: Principal = Depends(admin)) -> dict[str, Any]:
    wired = wiring_of(request)
    if provider_resume.in_batch_mode(wired, batch_id):  # --mode batch: a new provider job, as `reasongen resume`
        batches.reopen(wired, batch_id)
        return {"batch": batch_id, "resent_requests": provider_resume.resume(wired, batch_id)}
    if not wired.settings.broker_url:
        raise ValueError(f"no broker configured: resume batch {batch_id} in a terminal with reasongen resume "
                         f"{batch_id} (it runs the work there)")
    batches.reopen(wired, batch_id)
    found = sweeper.sweep(wired, batch_id=batch_id, force=True).as_dict()
    return {"batch": batch_id, "resent": len(found["resent"]), "requeued": len(found["requeued"])}


@router.post("/api/batches/{batch_id}/release", tags=["monitor"], summary="Fire a follow-up held for review now "
                                                                          "(admins; needs a broker)")
def api_release(request: Request, batch_id: int, _: Principal = Depends(admin)) -> dict[str, Any]:
    from judging import gate

    wired = wiring_of(request)
    if not wired.settings.broker_url:
        raise ValueError(f"no broker configured: release batch {batch_id} in a terminal with reasongen release "
                         f"{batch_id} (the follow-up then runs there)")
    fired = gate.release(wired, batch_id, force=True)
    return {"batch": batch_id, "released": bool(fired), "then": fired[1] if fired else None}


@router.get("/api/workers", tags=["monitor"], summary="Live workers (heartbeats, current chunk) and queue depths")
def api_workers(request: Request) -> dict[str, Any]:
    return monitor.workers_report(wiring_of(request))


@router.get("/api/builds", tags=["monitor"], summary="Builds with lineage and their diff from the parent")
def api_builds(request: Request) -> list[dict[str, Any]]:
    return build_rows(request)


@router.get("/api/runs", tags=["monitor"], summary="Training runs")
def api_runs(request: Request) -> list[dict[str, Any]]:
    return run_rows(request)


@router.get("/api/runs/{run_id}/metrics", tags=["monitor"], summary="A run's loss curve points")
def api_run_metrics(request: Request, run_id: int) -> list[dict[str, Any]]:
    return run_metrics(request, run_id)


# -- pages (a full page, and the fragment it polls) ----------------------------------------------
@router.get("/batches", response_class=HTMLResponse, include_in_schema=False)
def batches_page(request: Request) -> Response:
    return page(request, "batches.html", batches=batch_rows(request))


@router.get("/batches/rows", response_class=HTMLResponse, include_in_schema=False)
def batches_rows(request: Request) -> Response:
    return page(request, "_batches.html", batches=batch_rows(request))


@router.get("/workers", response_class=HTMLResponse, include_in_schema=False)
def workers_page(request: Request) -> Response:
    return page(request, "workers.html", report=monitor.workers_report(wiring_of(request)))


@router.get("/workers/rows", response_class=HTMLResponse, include_in_schema=False)
def workers_rows(request: Request) -> Response:
    return page(request, "_workers.html", report=monitor.workers_report(wiring_of(request)))


@router.get("/builds", response_class=HTMLResponse, include_in_schema=False)
def builds_page(request: Request) -> Response:
    return page(request, "builds.html", builds=build_rows(request))


@router.get("/runs", response_class=HTMLResponse, include_in_schema=False)
def runs_page(request: Request, ids: str | None = None) -> Response:
    return page(request, "runs.html", **_runs_context(request, ids))


@router.get("/runs/chart", response_class=HTMLResponse, include_in_schema=False)
def runs_chart(request: Request, ids: str | None = None) -> Response:
    return page(request, "_runs_chart.html", **_runs_context(request, ids))


def _runs_context(request: Request, ids: str | None) -> dict[str, Any]:
    runs = run_rows(request)
    chosen = [int(i) for i in (ids or "").split(",") if i.strip().isdigit()] or [r["id"] for r in runs[:3]]
    series = []
    for run_id in chosen:
        points = run_metrics(request, run_id)
        for split in ("train", "eval"):
            pts = [(p["step"], p["loss"]) for p in points if p["split"] == split]
            if pts:
                series.append(Series(f"run {run_id} {split}", pts, dashed=split == "eval"))
    return {"runs": runs, "chosen": chosen, "ids": ",".join(map(str, chosen)), "chart": loss_chart(series)}

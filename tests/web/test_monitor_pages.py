"""Monitoring pages and /metrics read the same services as the CLI (workers.monitor, repositories)."""

from __future__ import annotations

from review import service
from storage.models import Build, Run, RunMetric, utcnow
from web import accounts


def test_metrics_need_a_token_and_report_the_pipeline(app, drafts, web_wired):
    from fastapi.testclient import TestClient

    with web_wired.uow() as uow:
        service.approve(uow, drafts["en-1"], 1, "rex")
        token = accounts.new_token(uow, "ada")
        uow.heartbeats.beat("w1", utcnow(), counters={"requests": 12, "rate_limited": 2, "retries": 3})
        uow.commit()
    assert TestClient(app).get("/metrics").status_code == 401
    body = TestClient(app, headers={"authorization": f"Bearer {token}"}).get("/metrics").text
    assert 'reasongen_drafts{status="pending"} 3.0' in body
    assert 'reasongen_drafts{status="approved"} 1.0' in body
    assert 'reasongen_review_decisions_total{action="approve",source="person"} 1.0' in body
    assert 'reasongen_reviewer_decisions_total{action="approve",reviewer="rex"} 1.0' in body
    assert "reasongen_tokens_total" in body and "reasongen_web_requests_total" in body
    assert 'reasongen_teacher_events_total{event="rate_limited",worker="w1"} 2.0' in body  # 429s, from heartbeats
    assert 'reasongen_teacher_events_total{event="retries",worker="w1"} 3.0' in body


def test_runs_page_overlays_loss_curves_and_builds_show_lineage(signed_in, drafts, web_wired):
    with web_wired.uow() as uow:
        ds = uow.records.dataset("d")
        parent = Build(dataset_id=ds.id, out_dir="/x/1", manifest={"diff": {"added": ["a", "b"]}},
                       manifest_sha256="a" * 64, n_train=2, n_eval=0)
        uow.session.add(parent)
        uow.session.flush()
        child = Build(dataset_id=ds.id, parent_id=parent.id, out_dir="/x/2", manifest_sha256="b" * 64,
                      manifest={"diff": {"added": ["c"], "removed": ["a"], "changed": []}}, n_train=2, n_eval=0)
        uow.session.add(child)
        uow.session.flush()
        runs = [Run(build_id=child.id, base_model="tiny", output_dir=f"/r/{i}", status="completed") for i in (1, 2)]
        uow.session.add_all(runs)
        uow.session.flush()
        for run in runs:
            uow.session.add_all(RunMetric(run_id=run.id, split="train", step=s, loss=2.0 / (s + run.id))
                                for s in range(1, 6))
        uow.commit()
        run_ids = [r.id for r in runs]
    rex, _ = signed_in("rex")
    page = rex.get("/runs", params={"ids": ",".join(map(str, run_ids))}).text
    assert page.count('class="curve"') == 2 and f"run {run_ids[1]} train" in page
    assert rex.get(f"/api/runs/{run_ids[0]}/metrics").json()[0] == {
        "split": "train", "step": 1, "epoch": None, "loss": 1.0, "learning_rate": None}
    builds = rex.get("/builds").text
    assert f"#{parent.id}" in builds and "removed 1" in builds and "added 1" in builds
    lineage = {b["id"]: b["parent_id"] for b in rex.get("/api/builds").json()}
    assert lineage == {parent.id: None, child.id: parent.id}


def test_workers_page_without_broker_says_so(signed_in):
    rex, _ = signed_in("rex")
    page = rex.get("/workers").text
    assert "No live worker" in page and "No broker configured" in page
    assert rex.get("/api/workers").json() == {"workers": [], "queues": None}


def test_admin_cancels_a_batch_from_the_page_reviewer_cannot(signed_in, drafts, web_wired):
    from workers.planning import BatchRequest, plan_batch

    planned = plan_batch(web_wired, BatchRequest(dataset="d", backend="fake"))
    rex, rex_csrf = signed_in("rex")
    ada, ada_csrf = signed_in("ada")
    page = ada.get("/batches").text
    assert f'hx-post="/api/batches/{planned.batch_id}/cancel"' in page and "Cancel" in page
    assert "Cancel</button>" not in rex.get("/batches/rows").text  # reviewers see no admin buttons
    assert rex.post(f"/api/batches/{planned.batch_id}/cancel", headers={"X-CSRF-Token": rex_csrf}).status_code == 403
    done = ada.post(f"/api/batches/{planned.batch_id}/cancel", headers={"X-CSRF-Token": ada_csrf})
    assert done.status_code == 200
    assert ada.get(f"/api/batches/{planned.batch_id}").json()["status"] in ("cancelled", "stopping")
    resume = ada.post(f"/api/batches/{planned.batch_id}/resume", headers={"X-CSRF-Token": ada_csrf})
    assert resume.status_code == 400 and "no broker" in resume.json()["detail"]
    release = ada.post(f"/api/batches/{planned.batch_id}/release", headers={"X-CSRF-Token": ada_csrf})
    assert release.status_code == 400 and "reasongen release" in release.json()["detail"]
    assert rex.post(f"/api/batches/{planned.batch_id}/release", headers={"X-CSRF-Token": rex_csrf}).status_code == 403

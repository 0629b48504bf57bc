"""The batch API of the loopback server: ``/v1/files`` and ``/v1/batches``, as OpenAI documents them.

An uploaded batch input file is validated when a batch is created, like the real API: every line JSON with a
unique ``custom_id``, ``method`` POST, ``url`` equal to the batch's endpoint and a ``body`` with a ``model``;
a bad file fails the batch with per-line errors. A job's processing is simulated from the wall clock
(``Faults.batch_seconds``): it is ``in_progress`` with a growing count, then ``completed`` with an output
file (200s) and an error file (everything else). Faults: ``batch_expire_after`` (expire once that fraction is
done: the rest goes to the error file as ``batch_expired``), ``batch_fail_validation``, the usual per-request
faults and ``[[stub:FAULT]]`` markers (an ``error`` lands in the error file), and a cancel midway (the
requests done so far are in the output file). With ``Faults.state_dir`` files and jobs live on disk, so a
restarted server carries on. ``/stats`` counts ``batch_lines_paid`` and ``batch_lines_repeated`` (a line
whose prompt already had a paid answer): what "nothing sent twice" is checked against.
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from reasongen.testing.completions import completion

TERMINAL = ("completed", "expired", "cancelled", "failed")


def _error_body(status: int, message: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": code, "param": None, "code": code}, "_status": status}


class BatchAPI:
    def __init__(self, server: Any):
        self.server = server
        self.files: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.paid: dict[str, int] = {}  # prompt digest -> 1 once a line with that prompt was answered 200
        self._load()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/files", self.upload), web.get("/v1/files", self.list_files),
            web.get("/v1/files/{id}", self.file_info), web.get("/v1/files/{id}/content", self.content),
            web.delete("/v1/files/{id}", self.delete_file),
            web.post("/v1/batches", self.create), web.get("/v1/batches", self.list_jobs),
            web.get("/v1/batches/{id}", self.retrieve), web.post("/v1/batches/{id}/cancel", self.cancel),
        ]

    # -- persistence (Faults.state_dir): a restarted server sees the same files and jobs ----------------------
    @property
    def _dir(self) -> Path | None:
        folder = getattr(self.server.state.faults, "state_dir", None)
        return Path(folder) if folder else None

    def _load(self) -> None:
        if self._dir and (self._dir / "batch_state.json").is_file():
            saved = orjson.loads((self._dir / "batch_state.json").read_bytes())
            self.files, self.jobs, self.paid = saved["files"], saved["jobs"], saved.get("paid", {})
            self.server.state.stats.update(saved.get("stats", {}))

    def _save(self) -> None:
        if self._dir:
            self._dir.mkdir(parents=True, exist_ok=True)
            keep = {k: v for k, v in self.server.state.stats.items() if k.startswith("batch_")}
            tmp = self._dir / "batch_state.json.tmp"
            tmp.write_bytes(orjson.dumps({"files": self.files, "jobs": self.jobs, "stats": keep,
                                         "paid": self.paid}))
            tmp.replace(self._dir / "batch_state.json")

    def _put(self, data: bytes, filename: str, purpose: str) -> dict[str, Any]:
        file_id = f"file-{uuid.uuid4().hex}"
        meta = {"id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                "filename": filename, "purpose": purpose, "status": "processed"}
        self.files[file_id] = {**meta, "_data": data.decode()}
        return meta

    @staticmethod
    def _public(meta: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in meta.items() if not k.startswith("_")}

    # -- files -------------------------------------------------------------------------------------------------
    async def upload(self, request: web.Request) -> web.Response:
        from reasongen.testing.openai_server import error, json_response

        form = await request.post()
        field, purpose = form.get("file"), str(form.get("purpose") or "")
        if not isinstance(field, web.FileField) or not purpose:
            return error(400, "'file' and 'purpose' are required", "invalid_request_error")
        meta = self._put(field.file.read(), field.filename or "upload.jsonl", purpose)
        self.server.state.stats["batch_files_uploaded"] += 1
        self._save()
        return json_response(meta)

    async def list_files(self, request: web.Request) -> web.Response:
        from reasongen.testing.openai_server import json_response

        purpose = request.query.get("purpose")
        data = [self._public(f) for f in self.files.values() if purpose in (None, f["purpose"])]
        return json_response({"object": "list", "data": data, "has_more": False})

    def _file(self, request: web.Request) -> dict[str, Any]:
        from reasongen.testing.openai_server import error

        found = self.files.get(request.match_info["id"])
        if found is None:
            raise web.HTTPNotFound(body=error(404, f"No such File object: {request.match_info['id']}",
                                              "not_found").body, content_type="application/json")
        return found

    async def file_info(self, request: web.Request) -> web.Response:
        from reasongen.testing.openai_server import json_response

        return json_response(self._public(self._file(request)))

    async def content(self, request: web.Request) -> web.Response:
        self.server.state.stats["batch_file_downloads"] += 1
        return web.Response(body=self._file(request)["_data"].encode(), content_type="application/octet-stream")

    async def delete_file(self, request: web.Request) -> web.Response:
        from reasongen.testing.openai_server import json_response

        meta = self._file(request)
        del self.files[meta["id"]]
        self._save()
        return json_response({"id": meta["id"], "object": "file", "deleted": True})

    # -- batches -----------------------------------------------------------------------------------------------
    async def create(self, request: web.Request) -> web.Response:
        from reasongen.testing.openai_server import error, json_response

        body = orjson.loads(await request.read() or b"{}")
        source = self.files.get(body.get("input_file_id", ""))
        if source is None:
            return error(400, f"input_file_id {body.get('input_file_id')!r} not found", "invalid_request_error")
        if body.get("endpoint") not in ("/v1/chat/completions", "/v1/embeddings", "/v1/responses"):
            return error(400, f"endpoint {body.get('endpoint')!r} is not supported", "invalid_request_error")
        now = int(time.time())
        job = {"id": f"batch_{uuid.uuid4().hex}", "object": "batch", "endpoint": body["endpoint"],
               "input_file_id": source["id"], "completion_window": body.get("completion_window", "24h"),
               "status": "validating", "output_file_id": None, "error_file_id": None, "errors": None,
               "created_at": now, "in_progress_at": None, "expires_at": now + 86400, "completed_at": None,
               "failed_at": None, "expired_at": None, "cancelling_at": None, "cancelled_at": None,
               "request_counts": {"total": 0, "completed": 0, "failed": 0},
               "metadata": body.get("metadata"), "_started": time.time(), "_cancel_at": None}
        problems, lines = self._validate(source["_data"], body["endpoint"])
        faults = self.server.state.faults
        if getattr(faults, "batch_fail_validation", False) and not problems:
            problems = [{"code": "invalid_request", "message": "simulated validation failure", "line": 1}]
        if problems:
            job.update(status="failed", failed_at=now, errors={"object": "list", "data": problems[:100]})
        else:
            job["request_counts"]["total"] = len(lines)
        self.jobs[job["id"]] = job
        self.server.state.stats["batch_jobs_created"] += 1
        self._save()
        return json_response(self._public(job))

    @staticmethod
    def _validate(text: str, endpoint: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        problems, lines, seen = [], [], set()
        for no, raw in enumerate(text.splitlines(), 1):
            if not raw.strip():
                continue
            try:
                line = orjson.loads(raw)
            except orjson.JSONDecodeError:
                problems.append({"code": "invalid_json_line", "message": "not valid JSON", "line": no})
                continue
            why = ("custom_id missing" if not isinstance(line.get("custom_id"), str) else
                   "duplicate custom_id" if line["custom_id"] in seen else
                   "method must be POST" if line.get("method") != "POST" else
                   f"url must be {endpoint}" if line.get("url") != endpoint else
                   "body must hold a model" if not isinstance(line.get("body"), dict) or "model" not in line["body"]
                   else None)
            if why:
                problems.append({"code": "invalid_request", "message": why, "line": no})
            else:
                seen.add(line["custom_id"])
                lines.append(line)
        if not lines and not problems:
            problems.append({"code": "empty_file", "message": "the input file holds no requests", "line": None})
        return problems, lines

    def _job(self, request: web.Request) -> dict[str, Any]:
        from reasongen.testing.openai_server import error

        job = self.jobs.get(request.match_info["id"])
        if job is None:
            raise web.HTTPNotFound(body=error(404, f"No such Batch: {request.match_info['id']}", "not_found").body,
                                   content_type="application/json")
        return job

    async def retrieve(self, request: web.Request) -> web.Response:
        from reasongen.testing.openai_server import json_response

        job = self._job(request)
        self.server.state.stats["batch_polls"] += 1
        self.advance(job)
        return json_response(self._public(job))

    async def cancel(self, request: web.Request) -> web.Response:
        from reasongen.testing.openai_server import json_response

        job = self._job(request)
        self.advance(job)
        if job["status"] not in TERMINAL:
            job.update(status="cancelling", cancelling_at=int(time.time()), _cancel_at=time.time())
            self.server.state.stats["batch_cancels"] += 1
            self._save()
        return json_response(self._public(job))

    async def list_jobs(self, request: web.Request) -> web.Response:
        from reasongen.testing.openai_server import json_response

        jobs = sorted(self.jobs.values(), key=lambda j: j["created_at"], reverse=True)
        after = request.query.get("after")
        if after:
            ids = [j["id"] for j in jobs]
            jobs = jobs[ids.index(after) + 1:] if after in ids else []
        limit = int(request.query.get("limit", 20))
        page = [self._public(j) for j in jobs[:limit]]
        for job in page:
            self.advance(self.jobs[job["id"]])
        return json_response({"object": "list", "data": [self._public(self.jobs[j["id"]]) for j in page],
                              "first_id": page[0]["id"] if page else None,
                              "last_id": page[-1]["id"] if page else None, "has_more": len(jobs) > limit})

    # -- simulated processing ----------------------------------------------------------------------------------
    def advance(self, job: dict[str, Any]) -> None:
        """Move a job along the wall clock: validating -> in_progress -> completed | expired | cancelled."""
        if job["status"] in TERMINAL:
            return
        faults, now = self.server.state.faults, time.time()
        span = max(float(getattr(faults, "batch_seconds", 0.0)), 1e-6)
        done = min(1.0, (now - job["_started"]) / span)
        total = job["request_counts"]["total"]
        if job["status"] == "validating":
            job.update(status="in_progress", in_progress_at=int(now))
        expire_after = getattr(faults, "batch_expire_after", None)
        if job["_cancel_at"] is not None:
            self._finish(job, math.floor(total * min(1.0, (job["_cancel_at"] - job["_started"]) / span)), "cancelled")
        elif expire_after is not None and done >= expire_after:
            self._finish(job, math.floor(total * expire_after), "expired")
        elif done >= 1.0:
            self._finish(job, total, "completed")
        else:
            job["request_counts"]["completed"] = math.floor(total * done)
        self._save()

    def _finish(self, job: dict[str, Any], processed: int, status: str) -> None:
        lines = self._validate(self.files[job["input_file_id"]]["_data"], job["endpoint"])[1]
        good: list[dict[str, Any]] = []
        bad: list[dict[str, Any]] = []
        for no, line in enumerate(lines):
            out = self._answer(line, no) if no < processed else {
                "id": f"batch_req_{uuid.uuid4().hex}", "custom_id": line["custom_id"], "response": None,
                "error": {"code": "batch_expired" if status == "expired" else "batch_cancelled",
                          "message": f"This request could not be executed before the batch was {status}."}}
            (good if out["response"] and out["response"]["status_code"] == 200 else bad).append(out)
        stamp = int(time.time())
        if good:
            job["output_file_id"] = self._put(b"\n".join(orjson.dumps(o) for o in good) + b"\n",
                                              f"{job['id']}_output.jsonl", "batch_output")["id"]
        if bad:
            job["error_file_id"] = self._put(b"\n".join(orjson.dumps(o) for o in bad) + b"\n",
                                             f"{job['id']}_error.jsonl", "batch_output")["id"]
        job["request_counts"] = {"total": len(lines), "completed": len(good), "failed": len(bad)}
        job.update(status=status, **{f"{status}_at": stamp})
        if status == "completed":
            job["finalizing_at"] = stamp

    def _answer(self, line: dict[str, Any], no: int) -> dict[str, Any]:
        st, body = self.server.state, line["body"]
        rejected = self.server.reject_format(body)
        reject_length = getattr(self.server, "reject_length", None)
        if rejected is None and reject_length is not None:
            rejected = reject_length(body)
        if rejected is not None:
            status, payload = rejected.status, orjson.loads(rejected.body)
        else:
            fault = st.pick_fault(body)
            fault = "error" if fault in ("hang", "drop", "ratelimit") else fault
            st.stats[f"batch_fault_{fault}"] += 1
            if fault == "error":
                status, payload = 500, _error_body(500, "The server had an error processing your request.",
                                                   "server_error")
                payload.pop("_status")
            else:
                status, payload = 200, completion(body, fault, no, st.faults.reply)
                self._count_paid(body)
        return {"id": f"batch_req_{uuid.uuid4().hex}", "custom_id": line["custom_id"],
                "response": {"status_code": status, "request_id": uuid.uuid4().hex, "body": payload}, "error": None}

    def _count_paid(self, body: dict[str, Any]) -> None:
        stats = self.server.state.stats
        digest = hashlib.sha256(orjson.dumps(body.get("messages"))).hexdigest()[:24]
        stats["batch_lines_paid"] += 1
        if digest in self.paid:
            stats["batch_lines_repeated"] += 1
        self.paid[digest] = 1

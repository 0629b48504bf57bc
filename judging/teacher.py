"""The judge over an OpenAI-compatible API: the teacher backend (same SDK, client pools, shared rate limiter,
retries, circuit breaker, structured-output fallback), asking for the judgement schema instead of a draft's.

The teacher's reply handling is specialised in two places only: the response schema it sends in json_schema
mode, and how a reply is read (one JSON object, never the draft parser). A reply that is not valid JSON, or has a
missing, non-integer or out-of-range score, is a failed judgement naming the problem; it decides nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from generation.backends.teacher import TeacherBackend, TeacherFailure
from generation.records import DraftResult
from judging.judges import JudgeResult, from_reply
from judging.rubric import JudgePrompt
from judging.scores import SCHEMA_NAME, ScoreError, load_object, response_schema


def judgement_format(body: dict[str, Any]) -> dict[str, Any]:
    """The request body asking for a judgement: in json_schema mode, the judgement schema instead of a draft's
    (online here, and in provider batch mode: judging/provider_batch.py)."""
    fmt = body.get("response_format") or {}
    if fmt.get("type") != "json_schema":
        return body
    return {**body, "response_format": {"type": "json_schema", "json_schema": {
        "name": SCHEMA_NAME, "strict": True, "schema": response_schema()}}}


def read_judgement(text: str, finish_reason: str | None) -> DraftResult:
    """A reply that is one JSON object, kept whole for the scores to be read against the criteria; a
    ScoreError (a ValueError) otherwise."""
    load_object(text)
    return DraftResult(response=text, raw_text=text, finish_reason=finish_reason or "stop")


class _JudgeTransport(TeacherBackend):
    """The teacher, asking for (and reading) a judgement."""

    async def _post(self, client: Any, body: dict[str, Any]) -> bytes:
        return await super()._post(client, judgement_format(body))

    async def _parsed(self, client: Any, messages: Any, reply: Any, *rest: Any) -> DraftResult:
        text = reply.content or ""
        try:
            return read_judgement(text, reply.finish_reason)
        except ScoreError as exc:
            raise TeacherFailure(str(exc), text, "malformed") from None


class TeacherJudge:
    name = "teacher"
    is_fake = False

    def __init__(self, transport: TeacherBackend):
        self.transport = transport
        self.model = transport.model

    @classmethod
    def from_settings(cls, settings: Any, model: str | None = None, **options: Any) -> "TeacherJudge":
        model = model or getattr(settings, "judge_model", None) or settings.teacher_model
        options.setdefault("temperature", 0.0)
        return cls(_JudgeTransport.from_settings(settings, model=model, **options))

    @property
    def max_in_flight(self) -> int:
        return int(self.transport.max_in_flight)

    def cache_params(self) -> dict[str, Any]:
        return dict(self.transport.cache_params())

    def judge(self, prompts: Sequence[JudgePrompt]) -> list[JudgeResult]:
        return self.submit(prompts).result()

    def submit(self, prompts: Sequence[JudgePrompt]) -> "Future[list[JudgeResult]]":
        drafts = self.transport.submit([p.prompt for p in prompts])
        out: Future[list[JudgeResult]] = Future()

        def done(f: "Future[list[DraftResult]]") -> None:
            try:
                out.set_result([from_reply(p, r) for p, r in zip(prompts, f.result(), strict=True)])
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
                out.set_exception(exc)

        drafts.add_done_callback(done)
        return out

    def close(self) -> None:
        self.transport.close()

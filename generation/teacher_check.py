"""`reasongen teacher check`: what a teacher endpoint can do, measured before a batch depends on it.

Reachable, key accepted, model listed, ``response_format`` honoured (or ignored, or refused), context
length and where it came from, latency with one request and with N in flight, and a suggested
concurrency: a server that computes one request at a time gains nothing from more than a couple in
flight, and only makes them wait in its queue.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import openai
import orjson

from generation import context as ctx
from generation.backends.chat_format import MODES, format_args, is_strict_json_object, raw_response_class
from generation.breaker import classify
from generation.parse import parse_draft

PROBE = [{"role": "system", "content": "Reply with one JSON object with the string fields transformed_input, "
                                       "reasoning and response, and nothing else."},
         {"role": "user", "content": "Instruction: say hello in English."}]


@dataclass
class CheckReport:
    base_url: str
    model: str
    reachable: bool = False
    key_accepted: bool | None = None
    model_listed: bool | None = None
    listed_models: list[str] = field(default_factory=list)
    response_format: str = "unknown"
    reply_parses: bool | None = None
    context_length: int | None = None
    context: str = "unknown"
    latency_1_s: float | None = None
    latency_n_s: float | None = None
    in_flight: int = 0
    speedup: float | None = None
    suggested_concurrency: int | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def check(settings: Any, model: str | None = None, in_flight: int = 8, max_tokens: int = 64) -> CheckReport:
    return asyncio.run(_check(settings, model or settings.teacher_model, in_flight, max_tokens))


async def _check(settings: Any, model: str, in_flight: int, max_tokens: int) -> CheckReport:
    report = CheckReport(settings.openai_base_url or "https://api.openai.com/v1", model, in_flight=in_flight)
    secret = settings.api_key()
    client = openai.AsyncOpenAI(base_url=settings.openai_base_url, api_key=secret or "not-needed", max_retries=0,
                                timeout=settings.teacher_timeout_s)
    try:
        payload = await _models(client, report, secret)
        if not report.reachable or report.key_accepted is False:
            return report
        server_length = ctx.from_models_payload(payload, model) if payload else None
        info = ctx.resolve(server_length, settings.teacher_context_length, model)
        report.context_length, report.context = info.length, info.describe()
        if info.length is None:
            report.notes.append("context length unknown: set REASONGEN_TEACHER_CONTEXT_LENGTH so over-long "
                                "prompts fail before they are sent")
        if not await _formats(client, report, model, max_tokens, secret):
            return report
        await _latency(client, report, model, max_tokens, in_flight)
    finally:
        await client.close()
    return report


async def _models(client: openai.AsyncOpenAI, report: CheckReport, secret: str | None) -> Any:
    try:
        response = await client.get("/models", cast_to=raw_response_class())
        payload = orjson.loads(await response.aread())
    except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
        report.reachable, report.key_accepted = True, False
        report.problems.append(f"the server refused the key ({_why(exc, secret)}): set OPENAI_API_KEY")
        return None
    except openai.APIStatusError as exc:  # no /models here (some servers): the chat request tells the rest
        report.reachable = True
        report.notes.append(f"/models is not available ({_why(exc, secret)})")
        return None
    except (openai.APIConnectionError, orjson.JSONDecodeError) as exc:
        report.problems.append(f"cannot reach {report.base_url}: {_why(exc, secret)}; start the server or fix "
                               "OPENAI_BASE_URL")
        return None
    report.reachable, report.key_accepted = True, True
    report.listed_models = [str(m.get("id")) for m in payload.get("data") or [] if isinstance(m, dict)]
    report.model_listed = report.model in report.listed_models
    if not report.model_listed:
        report.notes.append(f"{report.model} is not in /models (a server that loads models on demand, such as "
                            "transformers serve, lists only loaded ones)")
    return payload


async def _formats(client: openai.AsyncOpenAI, report: CheckReport, model: str, max_tokens: int,
                   secret: str | None) -> bool:
    """Ask for JSON with each mode, best first: honoured, ignored, or refused."""
    for mode in MODES[:-1]:
        try:
            text = await _chat(client, model, max_tokens, mode)
        except openai.APIStatusError as exc:
            if exc.status_code in (400, 422):
                report.notes.append(f"response_format {mode} refused: {_why(exc, secret)}")
                continue
            if exc.status_code in (401, 403):
                report.key_accepted = False
            report.problems.append(f"a chat request for {model} failed: {_why(exc, secret)}"
                                   + _hint(exc))
            return False
        except (openai.APIConnectionError, TimeoutError) as exc:
            report.problems.append(f"a chat request for {model} failed: {_why(exc, secret)}")
            return False
        report.key_accepted = True
        report.reply_parses = _parses(text)
        if is_strict_json_object(text):
            report.response_format = f"honoured ({mode})"
        else:
            report.response_format = "ignored (replies are parsed leniently)"
        return True
    report.response_format = "refused (requests are sent without it, replies parsed leniently)"
    return True


async def _latency(client: openai.AsyncOpenAI, report: CheckReport, model: str, max_tokens: int,
                   in_flight: int) -> None:
    alone = [await _timed(client, model, max_tokens) for _ in range(3)]
    report.latency_1_s = round(statistics.median(alone), 3)
    started = time.monotonic()
    together = await asyncio.gather(*(_timed(client, model, max_tokens) for _ in range(in_flight)))
    wall = time.monotonic() - started
    report.latency_n_s = round(statistics.median(together), 3)
    report.speedup = round((in_flight / wall) / (1 / report.latency_1_s), 2) if wall > 0 else None
    report.suggested_concurrency = suggest(in_flight, report.speedup)
    if report.speedup is not None and report.speedup < 1.5:
        report.notes.append(f"the server computes about one request at a time ({in_flight} in flight took "
                            f"{report.latency_n_s:.2f}s each vs {report.latency_1_s:.2f}s alone): more in flight "
                            "only queue; enable batching on the server (vLLM, llama.cpp --parallel, transformers "
                            "serve --continuous-batching) or keep the concurrency low")


def suggest(in_flight: int, speedup: float | None) -> int | None:
    """A server that scaled to N in flight may take more; one that did not gets what it gained, plus one."""
    if speedup is None:
        return None
    if speedup >= 0.75 * in_flight:
        return in_flight * 2
    return max(2, round(speedup) + 1)


async def _chat(client: openai.AsyncOpenAI, model: str, max_tokens: int, mode: str) -> str:
    body = {"model": model, "messages": PROBE, "max_tokens": max_tokens, "temperature": 0, **format_args(mode)}
    response = await client.post("/chat/completions", cast_to=raw_response_class(), body=body)
    data = orjson.loads(await response.aread())
    return str(((data.get("choices") or [{}])[0].get("message") or {}).get("content") or "")


async def _timed(client: openai.AsyncOpenAI, model: str, max_tokens: int) -> float:
    started = time.monotonic()
    await _chat(client, model, max_tokens, "text")
    return time.monotonic() - started


def _parses(text: str) -> bool:
    try:
        parse_draft(text)
    except ValueError:
        return False
    return True


def _why(exc: BaseException, secret: str | None) -> str:
    failure = classify(exc, secret)
    if failure is not None:
        return failure.message
    return f"{type(exc).__name__}: {exc}"[:300]


def _hint(exc: openai.APIStatusError) -> str:
    if exc.status_code == 404:
        return "; is the model name right (see the listed models)?"
    if exc.status_code >= 500:
        return ("; the server fails on its own side: read its log (transformers serve answers 500 for a model "
                "without a chat template)")
    return ""

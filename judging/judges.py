"""The judge protocol, what a judge returns, and the registry that picks one by name.

A judge scores rendered rubric prompts; it never raises for one bad draft: that draft's result carries
``error`` (and no scores), which leaves the draft for people rather than deciding it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, Protocol

from judging.rubric import JudgePrompt


@dataclass(slots=True)
class JudgeResult:
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None
    raw_text: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0

    @property
    def failed(self) -> bool:
        return self.error is not None


class Judge(Protocol):
    name: str
    model: str
    is_fake: bool

    def cache_params(self) -> dict[str, Any]:
        """Parameters that change the judge's answer (part of the judgement's cache key)."""
        ...

    def judge(self, prompts: Sequence[JudgePrompt]) -> list[JudgeResult]:
        """One result per prompt, in order."""
        ...


def from_reply(prompt: JudgePrompt, reply: Any, *, embedded: bool = False) -> JudgeResult:
    """A judge model's reply (a generation DraftResult whose ``response`` holds the raw JSON) as a JudgeResult:
    scores when every asked criterion has a 1-5 integer and a reason, else a failure saying what is wrong."""
    return judgement_of(prompt.criteria, reply, embedded=embedded)


def judgement_of(criteria: Sequence[str], reply: Any, *, embedded: bool = False) -> JudgeResult:
    """from_reply for the criteria asked (provider batch mode knows them without rendering the prompt again)."""
    from judging.scores import ScoreError, parse_scores

    common = dict(raw_text=reply.raw_text, prompt_tokens=reply.prompt_tokens,
                  completion_tokens=reply.completion_tokens, cost_usd=reply.cost_usd, latency_s=reply.latency_s)
    if reply.error is not None:
        return JudgeResult(error=f"judge request failed: {reply.error}", **common)
    try:
        return JudgeResult(scores=parse_scores(reply.response or "", criteria, embedded=embedded), **common)
    except ScoreError as exc:
        return JudgeResult(error=str(exc), **common)


def submit(judge: Judge, prompts: Sequence[JudgePrompt]) -> "Future[list[JudgeResult]]":
    """Start judging without waiting when the judge can (the teacher), else judge now."""
    start: Callable[[Sequence[JudgePrompt]], Future[list[JudgeResult]]] | None = getattr(judge, "submit", None)
    if prompts and start is not None:
        return start(prompts)
    done: Future[list[JudgeResult]] = Future()
    done.set_result(judge.judge(prompts) if prompts else [])
    return done


_REGISTRY: dict[str, str] = {
    "fake": "judging.fake:FakeJudge.from_settings",
    "teacher": "judging.teacher:TeacherJudge.from_settings",
    "local": "judging.local:LocalJudge.from_settings",
}


def register(name: str, target: str) -> None:
    _REGISTRY[name] = target


def judge_names() -> list[str]:
    return sorted(_REGISTRY)


def create_judge(name: str, settings: Any, **options: Any) -> Judge:
    if name not in _REGISTRY:
        raise ValueError(f"Unknown judge backend {name!r}; choose one of: {', '.join(judge_names())}")
    module, _, attr = _REGISTRY[name].partition(":")
    obj: Any = import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    factory: Callable[..., Judge] = obj
    return factory(settings, **options)

"""The backend protocol and the registry that picks one by name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import import_module
from typing import Any, Protocol

from generation.records import DraftResult, TrainingView


@dataclass(frozen=True, slots=True)
class Prompt:
    """A rendered prompt for one view: chat-style parts; local backends flatten them."""

    view: TrainingView
    system: str
    user: str


class Backend(Protocol):
    name: str
    model: str
    is_fake: bool

    def cache_params(self) -> dict[str, Any]:
        """Generation parameters that change the output (they are part of the draft's cache key)."""
        ...

    def generate(self, prompts: Sequence[Prompt]) -> list[DraftResult]:
        """One result per prompt, in order. Never raises for a single bad record: it returns a failed draft."""
        ...


# name -> "module:factory"; factories take (settings, **options). Imported lazily so a teacher-only
# worker never imports torch.
_REGISTRY: dict[str, str] = {
    "fake": "generation.backends.fake:FakeBackend.from_settings",
    "teacher": "generation.backends.teacher:TeacherBackend.from_settings",
    "local": "generation.backends.local:LocalBackend.from_settings",
}


def register(name: str, target: str) -> None:
    _REGISTRY[name] = target


def backend_names() -> list[str]:
    return sorted(_REGISTRY)


def _resolve(target: str) -> Callable[..., Backend]:
    module, _, attr = target.partition(":")
    obj: Any = import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    factory: Callable[..., Backend] = obj
    return factory


def create_backend(name: str, settings: Any, **options: Any) -> Backend:
    if name not in _REGISTRY:
        # The plugin hook: modules in REASONGEN_WORKER_IMPORTS call register() when imported, in the CLI as in
        # a worker, so `generate --backend NAME` plans with the same registry the workers run with.
        for module in getattr(settings, "worker_imports", None) or ():
            import_module(module)
    if name not in _REGISTRY:
        raise ValueError(f"Unknown backend {name!r}; choose one of: {', '.join(backend_names())}")
    return _resolve(_REGISTRY[name])(settings, **options)

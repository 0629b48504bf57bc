"""Versioned prompt templates: a name, the file text, and its content hash."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from generation.backends.base import Prompt
from generation.records import TrainingView
from generation.restructure import LANGUAGE_NAMES, translation_directive

BUILTIN_DIR = Path(__file__).with_name("templates")


class TemplateNotFoundError(LookupError):
    pass


@dataclass(frozen=True)
class Template:
    name: str
    text: str

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def render(self, view: TrainingView, note: str | None = None) -> Prompt:
        system, user = _split_sections(self.text)
        values = _values(view, note)
        return Prompt(view=view, system=system.format(**values).strip(), user=user.format(**values).strip())


def _values(view: TrainingView, note: str | None) -> dict[str, str]:
    opening = "" if view.lang == "en" else f', opening with: "{translation_directive(view.lang)}"'
    return dict(
        instruction=view.instruction, input=view.input or "(none)", reference_output=view.reference_output,
        lang=view.lang, language_name=LANGUAGE_NAMES.get(view.lang, view.lang), field=view.field or "",
        uniqueness=view.uniqueness or "", reasoning_opening=opening, note=note or "",
    )


def _split_sections(text: str) -> tuple[str, str]:
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    _, _, rest = body.partition("[system]")
    system, _, user = rest.partition("[user]")
    return system, user


def load_template(name: str = "default", templates_dir: Path | None = None) -> Template:
    for folder in filter(None, [templates_dir, BUILTIN_DIR]):
        path = Path(folder) / f"{name}.txt"
        if path.is_file():
            return Template(name=name, text=path.read_text(encoding="utf-8"))
    raise TemplateNotFoundError(f"No template named {name!r} in {templates_dir or ''} or the built-in set")

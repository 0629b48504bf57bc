"""Versioned prompt templates: a name, the file text, and its content hash (part of every cache key).

A template is a text file ``<name>.txt`` with a ``[system]`` and a ``[user]`` section. Lines starting
with ``#`` are comments (``# version:`` and ``# description:`` are shown by the CLI). Placeholders are
``{name}`` (``{{``/``}}`` for literal braces); conditional blocks are ``{?cond}...{/?}`` where ``cond``
is ``name`` (non-empty), ``name=a|b`` or ``name!=a|b``. Users add templates to ``Settings.templates_dir``;
a file there shadows the built-in one of the same name.

Placeholders: instruction, input, reference_output, lang, language_name, field, uniqueness, note,
translation_directive, original_instruction, original_input.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from generation.backends.base import Prompt
from generation.records import TrainingView
from generation.restructure import LANGUAGE_NAMES, translation_directive

BUILTIN_DIR = Path(__file__).with_name("templates")
_BLOCK = re.compile(r"\{\?(\w+)(?:(!?=)([^}]*))?\}(.*?)\{/\?\}\n?", re.DOTALL)
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{(\w+)\}")


class TemplateNotFoundError(LookupError):
    pass


class TemplateError(ValueError):
    """A template file that cannot be rendered: the message names the file and the problem."""


@dataclass(frozen=True)
class Template:
    name: str
    text: str
    source: str = "<memory>"

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def version(self) -> str:
        return _header(self.text, "version") or self.hash[:12]

    @property
    def description(self) -> str:
        return _header(self.text, "description")

    def render(self, view: TrainingView, note: str | None = None) -> Prompt:
        system, user = _split_sections(self.text, self.source)
        values = _values(view, note)
        return Prompt(view=view, system=self._fill(system, values), user=self._fill(user, values))

    def _fill(self, text: str, values: dict[str, str]) -> str:
        text = _BLOCK.sub(lambda m: m.group(4) if _holds(m, values) else "", text)
        unknown = sorted(set(_PLACEHOLDER.findall(text)) - set(values) - {""})
        if unknown:
            raise TemplateError(f"{self.source}: unknown placeholder(s) {unknown}; known: {sorted(values)}")
        # One pass, so braces inside values (a reviewer's note, say) are never read as template syntax.
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)] if m.group(1) else m.group(0)[0], text).strip()


def _holds(match: re.Match[str], values: dict[str, str]) -> bool:
    name, op, options = match.group(1), match.group(2), match.group(3)
    value = values.get(name, "")
    if op is None:
        return bool(value)
    inside = value in {o.strip() for o in options.split("|")}
    return inside if op == "=" else not inside


def _values(view: TrainingView, note: str | None) -> dict[str, str]:
    return dict(
        instruction=view.instruction, input=view.input or "(none)", reference_output=view.reference_output,
        lang=view.lang, language_name=LANGUAGE_NAMES.get(view.lang, view.lang), field=view.field or "",
        uniqueness=view.uniqueness or "", note=(note or "").strip(),
        translation_directive=translation_directive(view.lang) if view.lang != "en" else "",
        original_instruction=view.original_instruction, original_input=view.original_input,
    )


def _header(text: str, key: str) -> str:
    match = re.search(rf"^#\s*{key}:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else ""


def _split_sections(text: str, source: str) -> tuple[str, str]:
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    if "[system]" not in body or "[user]" not in body:
        raise TemplateError(f"{source}: a template needs a [system] section and a [user] section")
    _, _, rest = body.partition("[system]")
    system, _, user = rest.partition("[user]")
    return system, user


def template_dirs(templates_dir: Path | None = None) -> list[Path]:
    return [Path(d) for d in filter(None, [templates_dir, BUILTIN_DIR])]


def load_template(name: str = "default", templates_dir: Path | None = None) -> Template:
    for folder in template_dirs(templates_dir):
        path = folder / f"{name}.txt"
        if path.is_file():
            template = Template(name=name, text=path.read_text(encoding="utf-8"), source=str(path))
            _validate(template)
            return template
    known = ", ".join(t.name for t in list_templates(templates_dir)) or "none"
    raise TemplateNotFoundError(f"No template named {name!r} (known: {known})")


def list_templates(templates_dir: Path | None = None) -> list[Template]:
    """Every template visible from settings, user ones first; a user file shadows a built-in name."""
    seen: dict[str, Template] = {}
    for folder in template_dirs(templates_dir):
        for path in sorted(folder.glob("*.txt")) if folder.is_dir() else []:
            seen.setdefault(path.stem, Template(path.stem, path.read_text(encoding="utf-8"), str(path)))
    return list(seen.values())


def _validate(template: Template) -> None:
    """Render once against a sample so a broken file fails at load, naming the file."""
    sample = TrainingView(0, "sample", "ja", "i", "x", "y", field="f", uniqueness="high")
    template.render(sample, note="n")

"""Versioned prompt templates: a name, the file text, and its content hash (part of every cache key).

A prompt template is a file ``<name>.jinja`` with a ``[system]`` and a ``[user]`` section, each a Jinja2
template (see ``generation.textfiles``); ``# version:`` and ``# description:`` lines before the first section are
shown by ``reasongen templates list``. Users add templates to ``Settings.templates_dir``; a file there shadows
the built-in one of the same name. The older ``<name>.txt`` files (``{name}``, ``{?cond}...{/?}``) still load and
render the same, so drafts written with them keep their lineage; new batches default to ``DEFAULT_TEMPLATE``.

Variables (``VARIABLES``): instruction, input, reference_output, lang, language_name, field, uniqueness, note,
translation_directive, original_instruction, original_input, key.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from generation.backends.base import Prompt
from generation.records import TrainingView
from generation.restructure import LANGUAGE_NAMES, RecordLike, restructure, translation_directive
from generation.textfiles import (
    FileBacked,
    TemplateError,
    TemplateNotFoundError,
    TextTemplate,
    find_file,
    list_files,
    load_file,
)

__all__ = ["DEFAULT_TEMPLATE", "VARIABLES", "Template", "TemplateError", "TemplateNotFoundError", "load_template",
           "list_templates", "scan_templates", "template_values", "validate_records", "validate_views"]

BUILTIN_DIR = Path(__file__).with_name("templates")
DEFAULT_TEMPLATE = "reason"
SECTIONS = ("system", "user")
VARIABLES = ("instruction", "input", "reference_output", "lang", "language_name", "field", "uniqueness", "note",
             "translation_directive", "original_instruction", "original_input", "key")
_SAMPLES = (
    TrainingView(0, "sample-ja", "ja", "i", "x", "y", field="f", uniqueness="high"),
    TrainingView(0, "sample-en", "en", "i", "", "y"),
)


@dataclass(frozen=True)
class Template(FileBacked):
    """A prompt template: renders a record's ``TrainingView`` (and a reviewer's note) into a ``Prompt``."""

    file: TextTemplate

    def render(self, view: TrainingView, note: str | None = None) -> Prompt:
        try:
            parts = self.file.render(template_values(view, note, legacy=self.syntax == "legacy"))
        except TemplateError as exc:
            raise TemplateError(f"record {view.key}: {exc}") from exc
        return Prompt(view=view, system=parts["system"], user=parts["user"])

    @classmethod
    def from_text(cls, name: str, text: str, syntax: str = "jinja", source: str = "<memory>") -> Template:
        template = cls(TextTemplate(name, text, source, syntax, SECTIONS))
        _validate(template)
        return template


def template_values(view: TrainingView, note: str | None = None, *, legacy: bool = False) -> dict[str, str]:
    """What a template sees. Legacy (.txt) templates had no ``else``, so they read an empty input as "(none)"."""
    return dict(
        instruction=view.instruction, input=view.input or ("(none)" if legacy else ""),
        reference_output=view.reference_output, lang=view.lang,
        language_name=LANGUAGE_NAMES.get(view.lang, view.lang), field=view.field or "",
        uniqueness=view.uniqueness or "", note=(note or "").strip(),
        translation_directive=translation_directive(view.lang) if view.lang != "en" else "",
        original_instruction=view.original_instruction, original_input=view.original_input, key=view.key,
    )


def template_dirs(templates_dir: Path | None = None) -> list[Path]:
    return [Path(d) for d in filter(None, [templates_dir, BUILTIN_DIR])]


def load_template(name: str = DEFAULT_TEMPLATE, templates_dir: Path | None = None) -> Template:
    """The named template, checked: sections present, Jinja2 syntax, only known variables, renders non-empty."""
    path = find_file(name, template_dirs(templates_dir))
    if path is None:
        known = ", ".join(t.name for t in list_templates(templates_dir)) or "none"
        raise TemplateNotFoundError(f"No template named {name!r} (known: {known})")
    return _loaded(path, path.stat().st_mtime_ns, path.stat().st_size)


@functools.lru_cache(maxsize=64)
def _loaded(path: Path, mtime_ns: int, size: int) -> Template:
    """Every chunk loads its batch's template: compiled and checked once per file version, not per chunk (that
    was a tenth of an in-process run's CPU). A changed file has a new mtime or size, so it is read again."""
    template = Template(load_file(path, SECTIONS))
    _validate(template)
    return template


def list_templates(templates_dir: Path | None = None) -> list[Template]:
    """Every usable template visible from settings, by name; a user file shadows a built-in name."""
    return scan_templates(templates_dir)[0]


def scan_templates(templates_dir: Path | None = None) -> tuple[list[Template], dict[str, str]]:
    """(usable templates, {path: why not} for the files that fail ``load_template``'s checks)."""
    found: list[Template] = []
    broken: dict[str, str] = {}
    for path in list_files(template_dirs(templates_dir)):
        try:
            template = Template(load_file(path, SECTIONS))
            _validate(template)
            found.append(template)
        except TemplateError as exc:
            broken[str(path)] = str(exc)
    return found, broken


def validate_views(template: Template, views: Iterable[TrainingView], notes: dict[int, str] | None = None,
                   limit: int = 5) -> None:
    """Render for every view; raise one TemplateError listing up to ``limit`` records that fail (before any request)."""
    problems: list[str] = []
    count = 0
    for view in views:
        try:
            template.render(view, (notes or {}).get(view.record_id))
        except TemplateError as exc:
            count += 1
            if len(problems) < limit:
                problems.append(str(exc))
    if problems:
        more = f" (and {count - len(problems)} more)" if count > len(problems) else ""
        raise TemplateError(f"template {template.name!r} fails for {count} record(s){more}: " + "; ".join(problems))


def validate_records(template: Template, records: Iterable[RecordLike], notes: dict[int, str] | None = None) -> None:
    """``validate_views`` for stored records, as generation will restructure them (tens of us a record).

    Skipped, without reading a record, for a template no string values can break (the built-in ones)."""
    if template.file.renders_for_any_values:
        return
    validate_views(template, (restructure(r) for r in records), notes)


def _validate(template: Template, samples: Sequence[TrainingView] = _SAMPLES) -> None:
    """Unknown variables (in any branch) and broken renders fail at load, naming the file."""
    template.file.check_variables(VARIABLES)
    for view in samples:
        template.file.render(template_values(view, "n", legacy=template.syntax == "legacy"), allow_empty=SECTIONS)

"""Sectioned Jinja2 text templates: the engine under prompt templates, judge rubrics and SFT layouts.

A template file has an optional preamble of ``# key: value`` lines (``version``, ``description``...) and then
sections, each opened by a line holding only ``[name]``. Every section is a Jinja2 template, rendered in a
``SandboxedEnvironment`` with ``StrictUndefined`` (a misspelt variable is an error, never an empty string),
``trim_blocks`` and ``lstrip_blocks`` (a line holding only ``{% if %}`` leaves no blank line behind).

Files ending in ``.txt`` are the older hand-rolled syntax (``{name}``, ``{?cond}...{/?}``); they are translated to
Jinja2 when loaded, so drafts written with them keep their lineage (same file, same hash) and render the same.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import SandboxedEnvironment

JINJA_SUFFIX = ".jinja"
LEGACY_SUFFIX = ".txt"
SUFFIXES = (JINJA_SUFFIX, LEGACY_SUFFIX)

ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                           keep_trailing_newline=False, autoescape=False)
# Legacy files keep their own whitespace rules, which the translation below writes out explicitly.
LEGACY_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)

_SAFE_NODES = (nodes.Output, nodes.TemplateData, nodes.If, nodes.Name, nodes.Const, nodes.List, nodes.Tuple,
               nodes.Compare, nodes.Operand, nodes.And, nodes.Or, nodes.Not)
_SAFE_OPS = ("eq", "ne", "in", "notin")
_SECTION = re.compile(r"^\[(\w+)\]\s*$", re.MULTILINE)
_META = re.compile(r"^#\s*(\w+):\s*(.*?)\s*$", re.MULTILINE)


class TemplateError(ValueError):
    """A template that cannot be used: the message names the file, the section and the problem."""


class TemplateNotFoundError(LookupError):
    pass


@dataclass(frozen=True)
class TextTemplate:
    """One template file: its name, full text (hashed: part of every cache key) and compiled sections."""

    name: str
    text: str
    source: str = "<memory>"
    syntax: str = "jinja"  # or "legacy" for the older .txt files
    sections_required: tuple[str, ...] = ()
    _compiled: dict[str, jinja2.Template] = field(default_factory=dict, compare=False, repr=False)
    _meta: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        meta_text, bodies = split_sections(self.text, self.syntax)
        missing = [s for s in self.sections_required if s not in bodies]
        if missing:
            found = ", ".join(f"[{s}]" for s in bodies) or "none"
            need = " and ".join(f"[{s}]" for s in self.sections_required)
            raise TemplateError(f"{self.source}: a template needs {need} sections (found {found})")
        env = LEGACY_ENV if self.syntax == "legacy" else ENV
        for section, body in bodies.items():
            source = body if self.syntax == "jinja" else translate_legacy(body)
            try:
                self._compiled[section] = env.from_string(source)
            except jinja2.TemplateSyntaxError as exc:
                raise TemplateError(f"{self.source} [{section}] line {exc.lineno}: {exc.message}") from exc
        # Legacy files read "# key:" lines anywhere; Jinja files only before the first section (markdown headings).
        for key, value in _META.findall(self.text if self.syntax == "legacy" else meta_text):
            self._meta.setdefault(key, value)

    @cached_property
    def hash(self) -> str:  # part of every record's cache key: hashed once, not per render
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def meta(self) -> dict[str, str]:
        return dict(self._meta)

    @property
    def version(self) -> str:
        return self.meta.get("version") or self.hash[:12]

    @property
    def description(self) -> str:
        return self.meta.get("description", "")

    @property
    def sections(self) -> list[str]:
        return list(self._compiled)

    @cached_property
    def variables(self) -> frozenset[str]:
        """Every variable any section reads, taken branch or not."""
        env = LEGACY_ENV if self.syntax == "legacy" else ENV
        names: set[str] = set()
        for section, body in split_sections(self.text, self.syntax)[1].items():
            names |= meta.find_undeclared_variables(env.parse(body if self.syntax == "jinja"
                                                              else translate_legacy(body)))
        return frozenset(names)

    @cached_property
    def renders_for_any_values(self) -> bool:
        """True when no string values can make a section fail or come out empty, so a batch need not render it
        record by record: every section has text outside any block, and uses only variables, constants,
        ``if``/``elif``/``else``, ``and``/``or``/``not``, ``==``, ``!=``, ``in`` (none of which can raise on strings).
        Anything else (filters, loops, attributes, indexing, arithmetic) is rendered for every record."""
        env = LEGACY_ENV if self.syntax == "legacy" else ENV
        for body in split_sections(self.text, self.syntax)[1].values():
            ast = env.parse(body if self.syntax == "jinja" else translate_legacy(body))
            if not all(isinstance(n, _SAFE_NODES) and (not isinstance(n, nodes.Operand) or n.op in _SAFE_OPS)
                       for n in ast.find_all(nodes.Node)):
                return False
            if not any(isinstance(n, nodes.Output) and any(isinstance(d, nodes.TemplateData) and d.data.strip()
                                                           for d in n.nodes) for n in ast.body):
                return False
        return True

    def check_variables(self, known: Iterable[str]) -> None:
        """Raise naming every variable the template reads that the caller does not supply."""
        unknown = sorted(self.variables - set(known))
        if unknown:
            raise TemplateError(f"{self.source}: unknown variable(s) {', '.join(unknown)}; "
                                f"known: {', '.join(sorted(known))}")

    def render(self, values: Mapping[str, Any], *, allow_empty: Iterable[str] = ()) -> dict[str, str]:
        """Every section rendered and stripped; an undefined variable or an empty section is a TemplateError."""
        out: dict[str, str] = {}
        for section, compiled in self._compiled.items():
            try:
                text = render_compiled(compiled, values).strip()
            except jinja2.TemplateError as exc:
                raise TemplateError(f"{self.source} [{section}]: {exc}") from exc
            if not text and section not in allow_empty:
                raise TemplateError(f"{self.source} [{section}] renders empty")
            out[section] = text
        return out


@lru_cache(maxsize=256)
def _plain_globals(template: jinja2.Template) -> dict[str, Any]:
    return dict(template.globals)


def render_compiled(template: jinja2.Template, values: Mapping[str, Any]) -> str:
    """``template.render(values)``, three times faster: the globals are merged into a plain dict once per call
    instead of through Jinja2's ChainMap (a build renders two strings for each of 100,000 drafts)."""
    context = template.new_context({**_plain_globals(template), **values}, shared=True)
    try:
        return template.environment.concat(template.root_render_func(context))
    except Exception:
        return template.environment.handle_exception()


def split_sections(text: str, syntax: str = "jinja") -> tuple[str, dict[str, str]]:
    """(preamble, {section: body}). Legacy files drop every ``#`` line, as they always did."""
    if syntax == "legacy":
        text = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    parts = _SECTION.split(text)
    preamble, rest = parts[0], parts[1:]
    bodies = {rest[i]: rest[i + 1].removeprefix("\n") for i in range(0, len(rest), 2)}
    return preamble, bodies


_LEGACY = re.compile(r"(\{\{|\}\})|\{(\w+)\}|\{\?(\w+)(?:(!?=)([^}]*))?\}|(\{/\?\}\n?)")


def translate_legacy(body: str) -> str:
    """The older syntax as Jinja2: ``{x}`` -> ``{{ x }}``, ``{?x=a|b}..{/?}`` -> ``{% if x in [..] %}..{% endif %}``.

    The old renderer dropped one newline after ``{/?}``; so does the translation. Literal text goes through
    ``{% raw %}`` so Jinja2 syntax inside it stays text."""
    out: list[str] = []
    pos = 0
    for m in _LEGACY.finditer(body):
        out.append(_literal(body[pos:m.start()]))
        brace, name, cond, op, options, close = m.groups()
        if brace:
            out.append("{{ %r }}" % brace[0])
        elif name:
            out.append("{{ %s }}" % name)
        elif cond:
            choices = [o.strip() for o in (options or "").split("|")]
            test = cond if op is None else f"{cond} {'in' if op == '=' else 'not in'} {choices!r}"
            out.append("{%% if %s %%}" % test)
        elif close:
            out.append("{% endif %}")
        pos = m.end()
    out.append(_literal(body[pos:]))
    return "".join(out)


def _literal(text: str) -> str:
    return f"{{% raw %}}{text}{{% endraw %}}" if any(c in text for c in "{}%#") else text


def find_file(name: str, folders: Iterable[Path]) -> Path | None:
    """The first ``name.jinja`` or ``name.txt`` in the folders, in order (a user folder shadows the built-ins)."""
    if not re.fullmatch(r"[\w.-]+", name) or name.startswith("."):
        raise TemplateError(f"{name!r} is not a template name (letters, digits, '-', '_' and '.')")
    for folder in folders:
        for suffix in SUFFIXES:
            path = Path(folder) / f"{name}{suffix}"
            if path.is_file():
                return path
    return None


def load_file(path: Path, sections_required: tuple[str, ...] = ()) -> TextTemplate:
    syntax = "legacy" if path.suffix == LEGACY_SUFFIX else "jinja"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"{path}: cannot read the template ({exc})") from exc
    return TextTemplate(name=path.stem, text=text, source=str(path), syntax=syntax,
                        sections_required=sections_required)


def list_files(folders: Iterable[Path]) -> list[Path]:
    """Every template file in the folders, one per name, first folder (and .jinja over .txt) winning."""
    seen: dict[str, Path] = {}
    for folder in folders:
        if not Path(folder).is_dir():
            continue
        for suffix in SUFFIXES:
            for path in sorted(Path(folder).glob(f"*{suffix}")):
                seen.setdefault(path.stem, path)
    return sorted(seen.values(), key=lambda p: p.stem)


class FileBacked:
    """What a thing rendered from one template file (a prompt template, a judge rubric) shows of that file."""

    file: TextTemplate

    @property
    def name(self) -> str:
        return self.file.name

    @property
    def text(self) -> str:
        return self.file.text

    @property
    def source(self) -> str:
        return self.file.source

    @property
    def syntax(self) -> str:
        return self.file.syntax

    @property
    def hash(self) -> str:
        return self.file.hash

    @property
    def version(self) -> str:
        return self.file.version

    @property
    def description(self) -> str:
        return self.file.description

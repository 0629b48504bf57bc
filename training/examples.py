"""Approved drafts -> prompt/completion examples in the seed's layout, with a configurable template.

A template is a TOML file with two Jinja2 strings, ``prompt`` and ``completion`` (sandboxed, strict: an unknown
variable is an error; ``{% if input %}...{% endif %}`` leaves a section out). Variables: ``FIELDS``.
A file written in the older format-string syntax (``{input}``, no ``{{`` or ``{%``) still works: it is
translated so that a paragraph whose placeholders all render empty is left out, as before.
"""

from __future__ import annotations

import hashlib
import re
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

from generation.restructure import restructure, translation_directive
from generation.textfiles import render_compiled

# The seed: English instruction, native input; the completion reasons (opening with the translation
# directive for ja/zh), restates the input in English, then answers in English.
DEFAULT_PROMPT = ("### Instruction:\n{{ instruction }}\n\n"
                  "{% if input %}### Input:\n{{ input }}\n\n{% endif %}"
                  "### Reasoning:\n")
DEFAULT_COMPLETION = ("{% if reasoning %}{{ reasoning }}\n\n{% endif %}"
                      "{% if transformed_input %}### Transformed input:\n{{ transformed_input }}\n\n{% endif %}"
                      "{% if response %}### Response:\n{{ response }}{% endif %}")
FIELDS = ("instruction", "input", "reasoning", "transformed_input", "response", "lang", "field", "uniqueness", "key")
# keep_trailing_newline: a prompt ends where the completion starts ("### Reasoning:\n").
_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                            keep_trailing_newline=True, autoescape=False)
_LEGACY_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


@dataclass(frozen=True)
class SftTemplate:
    name: str
    prompt: str
    completion: str
    legacy: bool = False  # written in the older format-string syntax
    _compiled: dict[str, jinja2.Template] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        source = f"SFT template {self.name!r}"
        for key in ("prompt", "completion"):
            text = getattr(self, key)
            jinja = _from_format_string(text, source) if self.legacy else text
            env = _LEGACY_ENV if self.legacy else _ENV
            try:
                parsed = env.parse(jinja)
            except jinja2.TemplateSyntaxError as exc:
                raise ValueError(f"{key} line {exc.lineno}: {exc.message}") from exc
            unknown = sorted(meta.find_undeclared_variables(parsed) - set(FIELDS))
            if unknown:
                raise ValueError(f"unknown placeholder(s) {unknown}; use: {', '.join(FIELDS)}")
            self._compiled[key] = env.from_string(jinja)

    @property
    def hash(self) -> str:
        return hashlib.sha256(f"{self.prompt}\x00{self.completion}".encode()).hexdigest()

    def render(self, key: str, values: dict[str, str]) -> str:
        try:
            text = render_compiled(self._compiled[key], values)
        except jinja2.TemplateError as exc:
            raise ValueError(f"SFT template {self.name!r} {key}: {exc}") from exc
        return re.sub(r"\n{3,}", "\n\n", text) if self.legacy else text


DEFAULT_TEMPLATE = SftTemplate("seed", DEFAULT_PROMPT, DEFAULT_COMPLETION)


def load_sft_template(path: Path | None) -> SftTemplate:
    """A TOML file with `prompt` and `completion` strings; None gives the seed layout."""
    if path is None:
        return DEFAULT_TEMPLATE
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the SFT template ({exc})") from exc
    missing = [k for k in ("prompt", "completion") if not isinstance(data.get(k), str)]
    if missing:
        raise ValueError(f"{path}: the SFT template needs string keys {missing}")
    legacy = not any(mark in data[k] for k in ("prompt", "completion") for mark in ("{{", "{%"))
    try:
        return SftTemplate(Path(path).stem, data["prompt"], data["completion"], legacy=legacy)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def _from_format_string(fmt: str, source: str) -> str:
    """``{name}`` format strings as Jinja2: each paragraph with placeholders only when one of them is non-empty."""
    out = []
    for block in re.split(r"(\n\n+)", fmt):
        parts, names = [], []
        try:
            parsed = list(string.Formatter().parse(block))
        except ValueError as exc:
            raise ValueError(f"{exc} in {source}") from exc
        for literal, name, spec, conversion in parsed:
            parts.append(f"{{% raw %}}{literal}{{% endraw %}}" if re.search(r"[{}%#]", literal) else literal)
            if name is not None:
                if not name.isidentifier() or spec or conversion:
                    raise ValueError(f"{{{name}}} is not a plain placeholder in {source}; write it in Jinja2")
                parts.append(f"{{{{ {name} }}}}")
                names.append(name)
        body = "".join(parts)
        out.append(f"{{% if {' or '.join(names)} %}}{body}{{% endif %}}" if names else body)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Example:
    key: str
    draft_id: int
    lang: str
    field: str
    uniqueness: str
    template_hash: str  # the generation template that wrote the draft
    instruction: str
    input: str
    prompt: str
    completion: str
    digest: str  # of prompt and completion: what the next build's diff compares

    def normalised(self) -> tuple[str, str]:
        return " ".join(self.prompt.split()), " ".join(self.completion.split())


def reasoning_with_directive(lang: str, reasoning: str) -> str:
    """ja/zh reasoning opens with the translation directive, as in the seed; added if a draft lacks it."""
    reasoning = (reasoning or "").strip()
    if lang == "en":
        return reasoning
    directive = translation_directive(lang)
    return reasoning if reasoning.startswith(directive) else f"{directive}\n{reasoning}".strip()


def make_example(row, template: SftTemplate) -> Example:  # type: ignore[no-untyped-def]
    """``row``: a record with its draft's columns (draft_id, draft_reasoning...), from BuildRepository.approved_rows."""
    view = restructure(row)
    values = dict(
        instruction=view.instruction.strip(), input=view.input.strip(), lang=view.lang,
        field=view.field or "", uniqueness=view.uniqueness or "", key=view.key,
        reasoning=reasoning_with_directive(view.lang, row.draft_reasoning),
        transformed_input=(row.draft_transformed_input or "").strip(), response=(row.draft_response or "").strip(),
    )
    prompt, completion = template.render("prompt", values), template.render("completion", values).strip()
    return Example(
        key=view.key, draft_id=row.draft_id, lang=view.lang, field=view.field or "", uniqueness=view.uniqueness or "",
        template_hash=row.draft_template_hash, instruction=values["instruction"], input=values["input"],
        prompt=prompt, completion=completion, digest=_digest(prompt, completion),
    )


def _digest(prompt: str, completion: str) -> str:
    return hashlib.sha256(f"{prompt}\x00{completion}".encode()).hexdigest()[:16]


def dedupe(examples: list[Example]) -> tuple[list[Example], list[int]]:
    """Keep the first of each whitespace-normalised (prompt, completion); examples are sorted by key."""
    seen: set[tuple[str, str]] = set()
    kept, dropped = [], []
    for ex in examples:
        norm = ex.normalised()
        if norm in seen:
            dropped.append(ex.draft_id)
        else:
            seen.add(norm)
            kept.append(ex)
    return kept, dropped


def drop_too_long(examples: list[Example], tokenizer_path: str | None,
                  max_length: int | None) -> tuple[list[Example], list[int]]:
    """Drop (never truncate) examples whose prompt+completion+EOS exceed max_length tokens."""
    if not max_length:
        return examples, []
    if not tokenizer_path:
        raise ValueError("--max-length needs --tokenizer PATH to count tokens")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_path)
    lengths = tok([e.prompt + e.completion for e in examples], add_special_tokens=True)["input_ids"]
    kept = [e for e, ids in zip(examples, lengths) if len(ids) + 1 <= max_length]
    dropped = [e.draft_id for e, ids in zip(examples, lengths) if len(ids) + 1 > max_length]
    return kept, dropped

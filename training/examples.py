"""Approved drafts -> prompt/completion examples in the seed's layout, with a configurable template.

A template is two format strings (prompt, completion). Paragraphs (text between blank lines) whose
placeholders all render empty are left out, so an English record with no input has no Input section.
"""

from __future__ import annotations

import hashlib
import re
import string
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from generation.restructure import restructure, translation_directive

# The seed: English instruction, native input; the completion reasons (opening with the translation
# directive for ja/zh), restates the input in English, then answers in English.
DEFAULT_PROMPT = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Reasoning:\n"
DEFAULT_COMPLETION = "{reasoning}\n\n### Transformed input:\n{transformed_input}\n\n### Response:\n{response}"


@dataclass(frozen=True)
class SftTemplate:
    name: str
    prompt: str
    completion: str

    @property
    def hash(self) -> str:
        return hashlib.sha256(f"{self.prompt}\x00{self.completion}".encode()).hexdigest()


DEFAULT_TEMPLATE = SftTemplate("seed", DEFAULT_PROMPT, DEFAULT_COMPLETION)
FIELDS = {"instruction", "input", "reasoning", "transformed_input", "response", "lang", "field", "uniqueness", "key"}


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
    unknown = sorted({n for k in ("prompt", "completion") for _, names in _blocks(data[k]) for n in names} - FIELDS)
    if unknown:
        raise ValueError(f"{path}: unknown placeholder(s) {unknown}; use: {', '.join(sorted(FIELDS))}")
    return SftTemplate(Path(path).stem, data["prompt"], data["completion"])


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


@lru_cache(maxsize=16)
def _blocks(fmt: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The template's paragraphs (separators kept) with the placeholders each one uses; parsed once."""
    return tuple((block, tuple(n for _, n, _, _ in string.Formatter().parse(block) if n))
                 for block in re.split(r"(\n\n+)", fmt))


def _render(fmt: str, values: dict[str, str]) -> str:
    blocks = _blocks(fmt)
    kept = [block for block, names in blocks if not names or any(values.get(n) for n in names)]
    if len(kept) == len(blocks):  # the common case: one format call, no clean-up
        return fmt.format(**values)
    return re.sub(r"\n{3,}", "\n\n", "".join(kept)).format(**values)


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
    prompt, completion = _render(template.prompt, values), _render(template.completion, values).strip()
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


def drop_too_long(examples: list[Example], tokenizer_path: str | None, max_length: int | None):  # type: ignore[no-untyped-def]
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

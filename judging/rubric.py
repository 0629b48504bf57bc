"""Rubrics: versioned judge prompts on the same engine as generation's templates (generation.textfiles).

A rubric is a sectioned Jinja2 file (``[system]`` / ``[user]``, ``# version:`` preamble), rendered sandboxed with
strict variables. It sees every generation template variable plus the draft (``transformed_input``,
``reasoning``, ``response``), ``criteria`` (the names that apply to this record), ``all_criteria`` and
``questions`` (name -> what the criterion asks). Built-in rubrics live in ``judging/rubrics/``; users put theirs
in ``<templates dir>/rubrics/NAME.jinja`` (shadowing a built-in name). The file's hash is part of every
judgement's cache key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generation.backends.base import Prompt
from generation.records import TrainingView
from generation.templates import VARIABLES, template_values
from generation.textfiles import FileBacked, TemplateNotFoundError, TextTemplate, find_file, list_files, load_file
from judging import criteria as crit

BUILTIN_DIR = Path(__file__).with_name("rubrics")
DEFAULT_RUBRIC = "default"
SECTIONS = ("system", "user")
DRAFT_FIELDS = ("transformed_input", "reasoning", "response")
RUBRIC_VARIABLES = (*VARIABLES, *DRAFT_FIELDS, "criteria", "all_criteria", "questions")


@dataclass(frozen=True)
class JudgePrompt:
    """The rendered rubric for one draft, with what the judge needs to check its answer."""

    draft_id: int
    prompt: Prompt  # system + user, as generation backends take them
    criteria: tuple[str, ...]
    draft: dict[str, str]


@dataclass(frozen=True)
class Rubric(FileBacked):
    file: TextTemplate

    def render(self, draft_id: int, view: TrainingView, draft: dict[str, Any]) -> JudgePrompt:
        names = crit.applicable(view.lang, view.uniqueness)
        fields = {k: str(draft.get(k) or "").strip() for k in DRAFT_FIELDS}
        values = {**template_values(view, None), **fields, "criteria": names, "all_criteria": list(crit.CRITERIA),
                  "questions": {n: c.question for n, c in crit.CRITERIA.items()}}
        parts = self.file.render(values)
        return JudgePrompt(draft_id, Prompt(view=view, system=parts["system"], user=parts["user"]), tuple(names),
                           fields)


def rubric_dirs(templates_dir: Path | None = None) -> list[Path]:
    user = [Path(templates_dir) / "rubrics"] if templates_dir else []
    return [*user, BUILTIN_DIR]


def load_rubric(name: str = DEFAULT_RUBRIC, templates_dir: Path | None = None) -> Rubric:
    path = find_file(name, rubric_dirs(templates_dir))
    if path is None:
        known = ", ".join(r.name for r in list_rubrics(templates_dir)) or "none"
        raise TemplateNotFoundError(f"No rubric named {name!r} (known: {known}); add your own as "
                                    f"<templates dir>/rubrics/{name}.jinja")
    rubric = Rubric(load_file(path, SECTIONS))
    rubric.file.check_variables(RUBRIC_VARIABLES)
    for view in (TrainingView(0, "s", "ja", "i", "x", "y", uniqueness="high"), TrainingView(0, "s", "en", "i", "", "y")):
        rubric.render(0, view, {"transformed_input": "t", "reasoning": "r", "response": "a"})
    return rubric


def list_rubrics(templates_dir: Path | None = None) -> list[Rubric]:
    return [Rubric(load_file(p, SECTIONS)) for p in list_files(rubric_dirs(templates_dir))]

"""The dataset card: a README.md in Hugging Face card format (YAML front matter, then Markdown) written by
every build, with its provenance: dataset version, teacher and judge models, template and rubric names and
hashes, policy, counts by lang/field/uniqueness and by decision source (person vs policy), fake drafts,
decontamination, and the diff from the parent build."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

CARD_NAME = "README.md"


def collect(uow: Any, dataset_id: int, draft_ids: Sequence[int]) -> dict[str, Any]:
    """What the card says about where the drafts came from (read in the build's read transaction)."""
    from storage.models import Draft, Judgement, Policy, Record

    ids = list(draft_ids)
    drafts: list[Any] = []
    for start in range(0, len(ids), 5000):
        drafts += uow.session.execute(select(Draft.id, Draft.backend, Draft.model, Draft.template_name,
                                             Draft.template_hash, Draft.reviewer, Draft.is_fake)
                                      .where(Draft.id.in_(ids[start : start + 5000]))).all()
    judged: list[Any] = []
    for start in range(0, len(ids), 5000):
        judged += uow.session.execute(select(Judgement.backend, Judgement.model, Judgement.rubric_name,
                                             Judgement.rubric_hash).where(Judgement.draft_id.in_(
                                                 ids[start : start + 5000]), Judgement.error.is_(None))).all()
    policies = {d.reviewer.split("@", 1)[0][len("policy:"):]: d.reviewer for d in drafts
                if (d.reviewer or "").startswith("policy:")}
    defined = {p.name: p for p in uow.session.scalars(select(Policy).where(Policy.name.in_(list(policies))))}
    hashes = uow.session.scalars(select(Record.content_hash).where(Record.dataset_id == dataset_id,
                                                                   Record.deleted_at.is_(None))
                                 .order_by(Record.content_hash)).all()
    version = hashlib.sha256("".join(hashes).encode()).hexdigest()[:16]
    n_records = uow.session.scalar(select(func.count()).select_from(Record).where(
        Record.dataset_id == dataset_id, Record.deleted_at.is_(None)))
    return {
        "dataset_version": version, "dataset_records": int(n_records or 0),
        "teachers": sorted({f"{d.backend}:{d.model}" for d in drafts}),
        "templates": sorted({f"{d.template_name}@{d.template_hash[:12]}" for d in drafts}),
        "judges": sorted({f"{j.backend}:{j.model}" for j in judged}),
        "rubrics": sorted({f"{j.rubric_name}@{j.rubric_hash[:12]}" for j in judged}),
        "policies": {name: (f"{reviewer} (approve >= {defined[name].approve_min:g}, reject <= "
                            f"{defined[name].reject_max:g}{', no flags' if defined[name].require_no_flags else ''})"
                            if name in defined else reviewer) for name, reviewer in sorted(policies.items())},
        "decision_source": dict(Counter("policy" if (d.reviewer or "").startswith("policy:") else "person"
                                        for d in drafts)),
        "fake_drafts": sum(bool(d.is_fake) for d in drafts),
    }


def _size_category(n: int) -> str:
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < bound:
            return name
    return "n>1M"


def render(manifest: dict[str, Any], facts: dict[str, Any]) -> str:
    counts, dataset = manifest["counts"], manifest["dataset"]
    langs = sorted(counts.get("lang", {}))
    decon = manifest.get("decontamination")
    diff = {k: len(v) for k, v in manifest.get("diff", {}).items()}
    front = ["---", f"pretty_name: {dataset} (reasongen SFT build)", "language:", *[f"- {x}" for x in langs],
             "task_categories:", "- text-generation", "tags:", "- reasongen", "- sft", "- reasoning",
             "size_categories:", f"- {_size_category(counts['total'])}", *_configs(manifest), "---", ""]
    lines = [f"# {dataset}: reasoning SFT set", "",
             "Built by reasongen: English instruction, native-language input (en/ja/zh), a reasoning that opens by "
             "translating the input, and an English response.", "", "## Provenance", "",
             f"- dataset version: `{facts['dataset_version']}` ({facts['dataset_records']} live records)",
             f"- teacher models: {_list(facts['teachers'])}", f"- prompt templates: {_list(facts['templates'])}",
             f"- judge models: {_list(facts['judges'])}", f"- rubrics: {_list(facts['rubrics'])}",
             f"- policies: {_list([f'{k}: {v}' for k, v in facts['policies'].items()])}",
             f"- SFT layout: `{manifest['sft_template']['name']}@{manifest['sft_template']['hash'][:12]}`",
             f"- parent build: {manifest.get('parent_build_id') or 'none'}"
             + (f" (added {diff.get('added', 0)}, removed {diff.get('removed', 0)}, changed {diff.get('changed', 0)})"
                if manifest.get("parent_build_id") else ""), "",
             "## Counts", "", f"- total {counts['total']}: train {counts.get('train', 0)}, eval {counts.get('eval', 0)}",
             *[f"- by {k}: " + ", ".join(f"{a} {b}" for a, b in counts.get(k, {}).items())
               for k in ("lang", "field", "uniqueness")],
             "- decided by: " + ", ".join(f"{k} {v}" for k, v in sorted(facts["decision_source"].items())),
             f"- fake (placeholder) drafts: {facts['fake_drafts']}"
             + (" — **this build holds placeholder text; do not train a real model on it**"
                if facts["fake_drafts"] else ""),
             *[f"- dropped as {k}: {v['count']}" for k, v in manifest.get("dropped", {}).items()], "",
             "## Decontamination", "",
             (f"Examples sharing a {decon['ngram']}-gram (CJK tokenised by character) with `{decon['source']}` "
              f"({decon['eval_rows']} rows) were dropped: {decon['dropped']}." if decon else
              "Not decontaminated against an evaluation set (build-sft --decontaminate FILE|DATASET)."), ""]
    return "\n".join(front + lines)


def _configs(manifest: dict[str, Any]) -> list[str]:
    """Point the Hub's viewer at one JSONL layout the build wrote (prompt/completion, else messages)."""
    formats = manifest.get("params", {}).get("formats", [])
    folder = next((f for f in ("prompt_completion", "messages", "alpaca") if f in formats), None)
    if folder is None:
        return []
    return ["configs:", "- config_name: default", "  data_files:", "  - split: train",
            f"    path: {folder}/train.jsonl", "  - split: eval", f"    path: {folder}/eval.jsonl"]


def _list(items: Sequence[str]) -> str:
    return ", ".join(f"`{i}`" for i in items) if items else "none"


def write_card(folder: Path, manifest: dict[str, Any], facts: dict[str, Any]) -> Path:
    path = folder / CARD_NAME
    path.write_text(render(manifest, facts), encoding="utf-8")
    return path

"""`reasongen build-sft` and `reasongen builds`: the SFT set from approved drafts."""

from __future__ import annotations

from typing import Any, Optional

import typer
from cli.context import console, print_json, wiring
from cli.tables import Col, counts, listing
from storage.repositories.records import parse_where
from training.formats import DEFAULT_FORMATS

JSON_HELP = "Print JSON."


def build_sft_cmd(
    ctx: typer.Context,
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset name."),
    out: Optional[str] = typer.Option(None, "--out", "-o",
                                      help="Empty or new folder to write (default ./builds/DATASET/build-ID)."),
    where: Optional[str] = typer.Option(None, "--where", help="Record filters, e.g. lang=ja,field=math."),
    eval_fraction: float = typer.Option(0.1, "--eval-fraction", min=0.0, max=0.99,
                                        help="Share of records in eval, decided by a hash of the record key."),
    seed: int = typer.Option(0, "--seed", help="Salt of the split hash (same seed, same split)."),
    formats: Optional[str] = typer.Option(None, "--formats",
                                          help=f"Comma separated, default all: {','.join(DEFAULT_FORMATS)}."),
    max_length: Optional[int] = typer.Option(None, "--max-length", min=1,
                                             help="Drop (never truncate) examples over N tokens; needs --tokenizer."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="Tokenizer folder or name to count tokens."),
    template: Optional[str] = typer.Option(None, "--template",
                                           help="TOML file with `prompt` and `completion` Jinja2 strings "
                                                "(docs/templates.md)."),
    decontaminate: Optional[str] = typer.Option(None, "--decontaminate", help="An eval set (file, or a dataset "
                                                "name): drop examples sharing an n-gram with it (CJK by character)."),
    ngram: int = typer.Option(13, "--ngram", min=1, help="With --decontaminate: n-gram length in tokens."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Write the SFT set from the approved drafts of a dataset: every format, a manifest, a dataset card
    (README.md), a build row."""
    from training.build import BuildOptions, build_sft

    with wiring(ctx) as wired:
        options = BuildOptions(dataset=dataset, out_dir=out, where=parse_where(where), eval_fraction=eval_fraction,
                               seed=seed, formats=_names(formats), max_length=max_length, tokenizer=tokenizer,
                               template=template, decontaminate=decontaminate, ngram=ngram)
        if as_json:
            result = build_sft(wired.uow, options)
        else:
            with console.status(f"building the SFT set of {dataset}..."):
                result = build_sft(wired.uow, options)
    summary = _summary(result.build_id, str(result.out_dir), result.manifest, result.manifest_sha256)
    print_json(summary) if as_json else _print(summary)


def _names(text: str | None) -> list[str] | None:
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    return names or None


def _summary(build_id: int, out_dir: str, manifest: dict[str, Any], sha: str) -> dict[str, Any]:
    return {
        "build_id": build_id, "out_dir": out_dir, "manifest_sha256": sha, "counts": manifest["counts"],
        "dropped": {k: v["count"] for k, v in manifest["dropped"].items()},
        "parent_build_id": manifest["parent_build_id"],
        "diff": {k: len(v) for k, v in manifest["diff"].items()}, "formats": manifest["params"]["formats"],
        "skipped_formats": manifest["params"].get("skipped_formats", {}),
        "fake_drafts": len(manifest.get("drafts", {}).get("fake_draft_ids", [])),
        "flagged_drafts": len(manifest.get("drafts", {}).get("flagged_drafts", {})),
    }


def _print(s: dict[str, Any]) -> None:
    c = s["counts"]
    console.print(f"build [bold]{s['build_id']}[/] -> {s['out_dir']}", soft_wrap=True)
    pairs: list[tuple[str, object]] = [("train", c["train"]), ("eval", c["eval"])]
    pairs += [(f"lang {lang}", n) for lang, n in c["lang"].items()]
    pairs += [("dropped: duplicates", s["dropped"]["duplicates"]), ("dropped: over max length", s["dropped"]["too_long"])]
    if "contaminated" in s["dropped"]:
        pairs += [("dropped: shares an n-gram with the eval set", s["dropped"]["contaminated"])]
    if s["parent_build_id"]:
        pairs += [(f"{what} since build {s['parent_build_id']}", n) for what, n in s["diff"].items()]
    console.print(counts(pairs, console))
    console.print(f"formats: {', '.join(s['formats'])}; manifest sha256 {s['manifest_sha256'][:16]}", soft_wrap=True)
    for name, why in s["skipped_formats"].items():
        console.print(f"[yellow]note:[/] format {name} skipped: {why}", soft_wrap=True, highlight=False)
    if not c["eval"]:
        console.print("[yellow]note:[/] the eval split is empty (--eval-fraction is 0, or too few records for it); "
                      f"`reasongen eval RUN --split train` samples the train split instead", soft_wrap=True)
    if s["fake_drafts"]:
        console.print(f"[yellow]note:[/] {s['fake_drafts']} drafts came from the FAKE backend (placeholders, "
                      "listed in the manifest)", soft_wrap=True)
    if s["flagged_drafts"]:
        console.print(f"note: {s['flagged_drafts']} approved drafts carry check flags (listed in the manifest)",
                      soft_wrap=True)


BUILD_COLUMNS = [Col("id", key=True, justify="right"), Col("dataset", key=True), Col("parent", justify="right"),
                 Col("batch", justify="right", drop=True), Col("train", key=True, justify="right"),
                 Col("eval", key=True, justify="right"), Col("folder", fold=True, min_width=16)]


def builds_cmd(
    ctx: typer.Context,
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Only this dataset's builds."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List SFT builds with their lineage and sizes."""
    with wiring(ctx) as wired, wired.uow() as uow:
        dataset_id = uow.records.dataset(dataset).id if dataset else None
        names = {d.id: d.name for d in uow.records.datasets()}
        rows = [{"id": b.id, "dataset": names.get(b.dataset_id), "dataset_id": b.dataset_id, "parent_id": b.parent_id,
                 "batch_id": b.batch_id, "n_train": b.n_train, "n_eval": b.n_eval, "out_dir": b.out_dir,
                 "created_at": b.created_at, "manifest_sha256": b.manifest_sha256} for b in uow.builds.list(dataset_id)]
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("No builds yet. Make one with: reasongen build-sft --dataset NAME")
        return
    cells = [[str(r[k]) if r[k] is not None else "-" for k in
              ("id", "dataset", "parent_id", "batch_id", "n_train", "n_eval", "out_dir")] for r in rows]
    console.print(listing(BUILD_COLUMNS, cells, console, noun="build"))


def register(app: typer.Typer) -> None:
    app.command("build-sft")(build_sft_cmd)
    app.command("builds")(builds_cmd)

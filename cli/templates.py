"""`reasongen templates list | show NAME | render NAME --record KEY`: what a record's prompt will be, exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.panel import Panel
from rich.text import Text

from cli.context import console, fail, print_json, settings_from, wiring
from cli.tables import Col, listing
from generation.restructure import restructure
from reasongen.errors import NotFound
from generation.templates import DEFAULT_TEMPLATE, Template, TemplateError, load_template, scan_templates

templates_app = typer.Typer(help="Prompt templates: list them, read one, render one for a record.",
                            no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(templates_app, name="templates")


def _load(ctx: typer.Context, name: str) -> Template:
    try:
        return load_template(name, settings_from(ctx).templates_dir)
    except (TemplateError, LookupError) as exc:
        fail(str(exc))


def _summary(t: Template) -> dict[str, Any]:
    return {"name": t.name, "version": t.version, "description": t.description, "hash": t.hash,
            "syntax": t.syntax, "source": t.source, "default": t.name == DEFAULT_TEMPLATE}


@templates_app.command("list")
def list_cmd(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every template: built-in ones and those in --templates-dir (which shadow a built-in of the same name).

    A file that fails the checks is listed with the reason (and exit status 1)."""
    usable, broken = scan_templates(settings_from(ctx).templates_dir)
    found = [_summary(t) for t in usable]
    found += [{"name": Path(path).stem, "source": path, "error": why} for path, why in broken.items()]
    if as_json:
        print_json(found)
        raise typer.Exit(1 if broken else 0)
    cols = [Col("name", key=True), Col("ver"), Col("hash", key=True), Col("description", drop=True)]
    rows = []
    for t in found:
        if "error" in t:
            rows.append([t["name"], "-", "-", Text(f"unusable: {t['error']}", "red")])
            continue
        name = f"{t['name']} (default)" if t["default"] else t["name"]
        legacy = " (older syntax: for existing drafts)" if t["syntax"] == "legacy" else ""
        rows.append([name, t["version"], t["hash"][:12], t["description"] + legacy])
    console.print(listing(cols, rows, console, noun="templates"))
    if broken:
        raise typer.Exit(1)


@templates_app.command("show")
def show_cmd(ctx: typer.Context, name: str = typer.Argument(..., help="Template name."),
             as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """A template's version, hash, file, the variables it reads, and its text."""
    t = _load(ctx, name)
    info = {**_summary(t), "variables": sorted(t.file.variables), "text": t.text}
    if as_json:
        print_json(info)
        return
    console.print(f"[bold]{t.name}[/] version {t.version}  ({t.syntax} syntax)", highlight=False)
    console.print(f"hash     {t.hash}\nfile     {t.source}", highlight=False, soft_wrap=True)
    console.print(f"reads    {', '.join(info['variables'])}", highlight=False)
    if t.description:
        console.print(t.description, highlight=False)
    console.print(Panel(Text(t.text), title=f"{t.name}", title_align="left"))


@templates_app.command("render")
def render_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(DEFAULT_TEMPLATE, help="Template name."),
    record: str = typer.Option(..., "--record", "-r", help="Record key."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Dataset name (needed when the key is in "
                                                                          "more than one)."),
    note: Optional[str] = typer.Option(None, "--note", help="A reviewer's note, as a rebuild would pass it."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Exactly the system and user messages this template sends for one record."""
    template = _load(ctx, name)
    with wiring(ctx) as wired, wired.uow() as uow:
        found = uow.records.by_key(record, dataset)
        if not found:
            raise NotFound(f"no record with key {record!r}" + (f" in dataset {dataset!r}" if dataset else ""))
        if len(found) > 1:
            fail(f"key {record!r} is in datasets {', '.join(d for d, _ in found)}; pick one with --dataset")
        ds_name, row = found[0]
        prompt = template.render(restructure(row), note)
    out = {"template": template.name, "version": template.version, "hash": template.hash, "dataset": ds_name,
           "record": record, "system": prompt.system, "user": prompt.user}
    if as_json:
        print_json(out)
        return
    console.print(f"[bold]{template.name}[/] {template.version} ({template.hash[:12]}) for {ds_name}/{record}",
                  highlight=False, soft_wrap=True)
    console.print(Panel(Text(prompt.system), title="system", title_align="left"))
    console.print(Panel(Text(prompt.user), title="user", title_align="left"))

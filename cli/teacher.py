"""`reasongen teacher check`: test a teacher endpoint (a self-hosted server above all) before a batch needs it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import typer
from rich.table import Table

from cli.context import console, print_json, settings_from
from reasongen.errors import ServiceUnavailable

if TYPE_CHECKING:
    from generation.teacher_check import CheckReport

teacher_app = typer.Typer(help="The teacher endpoint (OPENAI_BASE_URL): check what it can do.", no_args_is_help=True)

JSON_HELP = "Print the report as JSON."


@teacher_app.command("check")
def check(
    ctx: typer.Context,
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model to check (default: the teacher model)."),
    in_flight: int = typer.Option(8, "--in-flight", min=2, max=256, help="Requests in flight for the load test."),
    max_tokens: int = typer.Option(64, "--max-tokens", min=1, help="max_tokens of each test request."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Is the endpoint reachable, the key accepted, the model listed, response_format honoured? How long is the
    context, how long does one request take alone and with N in flight, and what concurrency suits it?
    Sends 3 + N + 1-2 small requests. Exits non-zero when the endpoint cannot serve drafts."""
    from generation.teacher_check import check as run_check

    report = run_check(settings_from(ctx), model, in_flight, max_tokens)
    if as_json:
        print_json(report.as_dict())
    else:
        console.print(_table(report))
        for note in report.notes:
            console.print(f"[yellow]note:[/] {note}")
        if report.suggested_concurrency:
            console.print(f"suggested: REASONGEN_TEACHER_CONCURRENCY={report.suggested_concurrency} "
                          "(a ceiling: the adaptive limit stays below it while latency rises)")
    if report.problems:
        raise ServiceUnavailable("; ".join(report.problems))


def _table(report: CheckReport) -> Table:
    def mark(value: bool | None) -> str:
        return "-" if value is None else "[green]yes[/]" if value else "[red]no[/]"

    table = Table("check", "result", title=f"teacher {report.model} at {report.base_url}", title_justify="left")
    table.add_row("reachable", mark(report.reachable))
    table.add_row("key accepted", mark(report.key_accepted))
    table.add_row("model listed", mark(report.model_listed))
    table.add_row("response_format", report.response_format)
    table.add_row("reply parses as a draft", mark(report.reply_parses))
    table.add_row("context length", report.context)
    if report.latency_1_s is not None:
        table.add_row("latency, 1 in flight", f"{report.latency_1_s:.2f}s")
        table.add_row(f"latency, {report.in_flight} in flight", f"{report.latency_n_s:.2f}s "
                      f"(throughput x{report.speedup} of one at a time)")
        table.add_row("suggested concurrency", str(report.suggested_concurrency))
    for problem in report.problems:
        table.add_row("[red]problem[/]", problem)
    return table


def register(app: typer.Typer) -> None:
    app.add_typer(teacher_app, name="teacher")

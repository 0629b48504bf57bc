"""The `reasongen` Typer app: root options, then each command group registers itself."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

import typer

from cli.errors import CliGroup
from reasongen import __version__
from reasongen.settings import load_settings

app = typer.Typer(
    name="reasongen",
    cls=CliGroup,  # the one error layer: `error:` lines and documented exit codes (cli/errors.py)
    help="Generate reasoning drafts for a multilingual (en/ja/zh) SFT dataset, review them, build and train.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals could hold an API key
)

# Each module defines register(app). The order is the order of a record's path.
COMMAND_MODULES = ["db", "ingest", "templates", "generate", "queue", "review", "judge", "policy", "build", "train", "demo", "users", "serve", "teacher"]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"reasongen {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    database_url: str = typer.Option(None, "--database-url", envvar="REASONGEN_DATABASE_URL",
                                     help="SQLAlchemy URL. Default: sqlite file reasongen.db here.", show_default=False),
    broker_url: str = typer.Option(None, "--broker-url", envvar="REASONGEN_BROKER_URL",
                                   help="Celery broker (redis://...). Unset: work runs in-process.", show_default=False),
    openai_base_url: str = typer.Option(None, "--openai-base-url", envvar="OPENAI_BASE_URL", show_default=False,
                                        help="Teacher endpoint (OpenAI, vLLM, Ollama...). The key comes only from "
                                             "OPENAI_API_KEY, never from the command line."),
    teacher_model: str = typer.Option(None, "--teacher-model", envvar="REASONGEN_TEACHER_MODEL", show_default=False,
                                      help="Teacher model. Default: gpt-4o-mini."),
    teacher_concurrency: int = typer.Option(None, "--teacher-concurrency", min=1, show_default=False,
                                            envvar="REASONGEN_TEACHER_CONCURRENCY",
                                            help="Teacher requests in flight per process. Default: 64."),
    teacher_rpm: int = typer.Option(None, "--teacher-rpm", min=1, envvar="REASONGEN_TEACHER_RPM", show_default=False,
                                    help="Requests per minute, shared by every worker through Redis."),
    teacher_tpm: int = typer.Option(None, "--teacher-tpm", min=1, envvar="REASONGEN_TEACHER_TPM", show_default=False,
                                    help="Tokens per minute, shared by every worker through Redis."),
    templates_dir: Path = typer.Option(None, "--templates-dir", envvar="REASONGEN_TEMPLATES_DIR", show_default=False,
                                       help="A folder of your own prompt templates."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    debug: bool = typer.Option(False, "--debug", envvar="REASONGEN_DEBUG",
                               help="Show the traceback of an error (also: REASONGEN_DEBUG=1)."),
) -> None:
    ctx.obj = load_settings(
        database_url=database_url, broker_url=broker_url, openai_base_url=openai_base_url,
        teacher_model=teacher_model, teacher_concurrency=teacher_concurrency, teacher_rpm=teacher_rpm,
        teacher_tpm=teacher_tpm, templates_dir=templates_dir,
    )


for _name in COMMAND_MODULES:
    import_module(f"cli.{_name}").register(app)

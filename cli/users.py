"""`reasongen users`: accounts for the web app (reviewers and admins), and API tokens for scripts."""

from __future__ import annotations

import sys

import typer
from rich.table import Table

from cli.context import console, fail, print_json, wiring
from web import accounts

users_app = typer.Typer(help="Web app accounts: add, list, disable users; issue API tokens.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")


@users_app.command("add")
def add_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Login name (letters, digits, _ . @ -)."),
    role: str = typer.Option("reviewer", "--role", help="reviewer (decides drafts) or admin (also policies, "
                                                         "batches, users)."),
    password_stdin: bool = typer.Option(False, "--password-stdin",
                                        help="Read the password from standard input (first line). Without it, "
                                             "the user can only use API tokens (reasongen users token NAME)."),
) -> None:
    """Add a user. The password is never taken from the command line (shell history, process list)."""
    password = _read_password() if password_stdin else None
    with wiring(ctx) as wired, wired.uow() as uow:
        accounts.add_user(uow, name, role, password)
        uow.commit()
    console.print(f"added {role} {name}" + ("" if password else " (no password: API tokens only)"))


def _read_password() -> str:
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        fail("no password on standard input; e.g. printf '%s\\n' \"$PW\" | reasongen users add NAME --password-stdin")
    return line


@users_app.command("list")
def list_cmd(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List users with their role and whether they are enabled."""
    with wiring(ctx) as wired, wired.uow() as uow:
        users = [accounts.user_dict(u) for u in uow.users.list()]
    if as_json:
        return print_json(users)
    table = Table("name", "role", "enabled", "password", "created")
    for u in users:
        table.add_row(u["name"], u["role"], "yes" if u["enabled"] else "no", "yes" if u["has_password"] else "no",
                      f"{u['created_at']:%Y-%m-%d %H:%M}")
    console.print(table)


@users_app.command("disable")
def disable_cmd(ctx: typer.Context, name: str = typer.Argument(..., help="User to disable.")) -> None:
    """Disable a user: their sessions and API tokens stop working at once; their decisions stay."""
    with wiring(ctx) as wired, wired.uow() as uow:
        accounts.disable_user(uow, name)
        uow.commit()
    console.print(f"disabled {name}")


@users_app.command("token")
def token_cmd(ctx: typer.Context, name: str = typer.Argument(..., help="User the token acts as.")) -> None:
    """Print a new API token (send it as 'Authorization: Bearer TOKEN'). It is shown only this once."""
    with wiring(ctx) as wired, wired.uow() as uow:
        token = accounts.new_token(uow, name)
        uow.commit()
    sys.stdout.write(token + "\n")

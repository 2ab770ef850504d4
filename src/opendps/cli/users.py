"""``dps user add|list|remove``: users and their tokens (DESIGN §11).

Run by an operator on the server's machine: these talk to the database directly (the same
``--config`` / ``--data-dir`` as ``dps server``), so no server needs to be running and no
token is needed to make the first one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.table import Table

from opendps.cli.common import (
    EXIT_USAGE,
    AsJson,
    ConfigFile,
    DataDir,
    err,
    fail,
    load_settings,
    print_json,
    print_table,
)
from opendps.errors import OpenDPSError
from opendps.service.context import Services

user_app = typer.Typer(
    help="Create, list and remove users (on the server's machine; no server needed).",
    no_args_is_help=True,
)


@contextmanager
def _services(config: Path | None, data_dir: Path | None) -> Iterator[Services]:
    settings = load_settings(config, data_dir=data_dir)
    services = Services(settings)
    try:
        yield services
    except OpenDPSError as exc:
        fail(exc.message, EXIT_USAGE)
    finally:
        services.close()


@user_app.command("add")
def add_user(
    name: str = typer.Argument(..., metavar="NAME"),
    admin: bool = typer.Option(False, "--admin", help="May see and act on everything."),
    guest: bool = typer.Option(False, "--guest", help="May use only the guest queues."),
    data_dir: Path | None = DataDir,
    config: Path | None = ConfigFile,
) -> None:
    """Create NAME, or re-key it (its old token stops working). The new token is printed
    as the last line; it is shown only once."""
    if admin and guest:
        fail("a user is either --admin or --guest, not both", EXIT_USAGE)
    with _services(config, data_dir) as services:
        token, created = services.identity.set_user(name, is_admin=admin, is_guest=guest)
        role = "admin" if admin else "guest" if guest else "user"
        if not services.settings.auth:
            err.print("note: auth is off in these settings, so the server ignores tokens")
    verb = "created" if created else "re-keyed (the old token no longer works)"
    typer.echo(f"{role} {name.strip()} {verb}; its token:")
    typer.echo(token)


@user_app.command("list")
def list_users(
    as_json: bool = AsJson,
    data_dir: Path | None = DataDir,
    config: Path | None = ConfigFile,
) -> None:
    """The users, with their roles."""
    with _services(config, data_dir) as services:
        users = services.identity.list_users()
    if as_json:
        print_json(
            [
                {
                    "name": u["name"],
                    "admin": bool(u["is_admin"]),
                    "guest": bool(u["is_guest"]),
                    "created": u["created"].isoformat() if u["created"] else None,
                }
                for u in users
            ]
        )
        return
    table = Table("user", "role", "created")
    for u in users:
        role = "admin" if u["is_admin"] else "guest" if u["is_guest"] else "user"
        created = u["created"].strftime("%Y-%m-%d %H:%M") if u["created"] else ""
        table.add_row(u["name"], role, created)
    print_table(table)


@user_app.command("remove")
def remove_user(
    name: str = typer.Argument(..., metavar="NAME"),
    data_dir: Path | None = DataDir,
    config: Path | None = ConfigFile,
) -> None:
    """Remove NAME: its token, and the tokens of its running jobs, stop working. Its jobs,
    outputs and secrets stay (an admin still sees them)."""
    with _services(config, data_dir) as services:
        services.identity.remove_user(name)
    typer.echo(f"user {name} removed")

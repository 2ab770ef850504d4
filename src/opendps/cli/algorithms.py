"""``dps algorithm ...``: register, inspect and delete algorithms."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from opendps.cli.common import (
    EXIT_FAILED,
    AsJson,
    Token,
    Url,
    connect,
    err,
    key_values,
    out,
    print_json,
    print_table,
    styled,
)
from opendps.client import Client

algorithm_app = typer.Typer(help="Register, inspect and delete algorithms.", no_args_is_help=True)


@algorithm_app.command("register")
def algorithm_register(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="MAAP/ADE YAML or CWL."),
    no_replace: bool = typer.Option(
        False, "--no-replace", help="Fail (409) if this name:version exists."
    ),
    wait: bool = typer.Option(False, "--wait", help="Wait for the build to finish."),
    url: str = Url,
    token: str | None = Token,
    as_json: bool = AsJson,
) -> None:
    """Register an algorithm (replacing the same name:version unless --no-replace)."""
    with connect(url, token) as client:
        summary = client.register(file, replace=not no_replace)
        if wait:
            summary = _wait_build(client, summary["id"], quiet=as_json)
        if as_json:
            print_json(summary)
        else:
            build = (summary.get("build") or {}).get("status", "ready")
            out.print(f"registered {escape(summary['id'])} (build {styled(build)})")
        if wait and (summary.get("build") or {}).get("status") == "failed":
            _show_build_failure(client, summary)
            raise typer.Exit(EXIT_FAILED)


def _wait_build(client: Client, process_id: str, quiet: bool) -> dict[str, Any]:
    if quiet:
        return client.wait_for_build(process_id, timeout=None)
    with err.status(f"building {escape(process_id)} …"):
        return client.wait_for_build(process_id, timeout=None)


def _show_build_failure(client: Client, description: dict[str, Any]) -> None:
    message = (description.get("build") or {}).get("message") or "see the build log"
    tail = client.build_log(description["id"]).splitlines()[-20:]
    err.print(f"[red]build of {escape(description['id'])} failed:[/red] {escape(message)}")
    if tail:
        err.print("[dim]--- build log (last lines) ---[/dim]")
        err.print(escape("\n".join(tail)))


@algorithm_app.command("list")
def algorithm_list(url: str = Url, token: str | None = Token, as_json: bool = AsJson) -> None:
    """List registered algorithms with their build state."""
    with connect(url, token) as client:
        processes = client.list_algorithms()
    if as_json:
        print_json(processes)
        return
    table = Table("process", "build", "owner", "updated", "description")
    for p in processes:
        build = (p.get("build") or {}).get("status", "ready")
        table.add_row(
            escape(p["id"]),
            styled(build),
            p.get("owner") or "",
            (p.get("updated") or "")[:19],
            escape(p.get("description") or ""),
        )
    print_table(table)


@algorithm_app.command("show")
def algorithm_show(
    process_id: str = typer.Argument(..., metavar="NAME[:VERSION]"),
    url: str = Url,
    token: str | None = Token,
    as_json: bool = AsJson,
) -> None:
    """Describe an algorithm: inputs, repository, build."""
    with connect(url, token) as client:
        d = client.describe(process_id)
    if as_json:
        print_json(d)
        return
    build = d.get("build") or {}
    key_values(
        [
            ("process", escape(d["id"])),
            ("description", escape(d.get("description") or "")),
            ("repository", d.get("repository_url")),
            ("run command", d.get("run_command")),
            ("queue", d.get("queue")),
            (
                "build",
                f"{styled(build.get('status', 'ready'))} {build.get('commit') or ''}".strip(),
            ),
            ("build message", build.get("message")),
            ("runs in", escape(build["container"]) if build.get("container") else None),
        ]
    )
    table = Table("input", "kind", "required", "default", "description")
    for name, spec in (d.get("inputs") or {}).items():
        default = (spec.get("schema") or {}).get("default")
        table.add_row(
            escape(name),
            spec.get("x-dps-kind", ""),
            "yes" if spec.get("minOccurs", 1) else "no",
            "" if default is None else escape(json.dumps(default)),
            escape(spec.get("description") or ""),
        )
    print_table(table)


@algorithm_app.command("delete")
def algorithm_delete(
    process_id: str = typer.Argument(..., metavar="NAME:VERSION"),
    url: str = Url,
    token: str | None = Token,
    as_json: bool = AsJson,
) -> None:
    """Delete (undeploy) an algorithm version."""
    with connect(url, token) as client:
        client.delete_algorithm(process_id)
    if as_json:
        print_json({"deleted": process_id})
    else:
        out.print(f"deleted {escape(process_id)}")


@algorithm_app.command("build-log")
def algorithm_build_log(
    process_id: str = typer.Argument(..., metavar="NAME[:VERSION]"),
    url: str = Url,
    token: str | None = Token,
    as_json: bool = AsJson,
) -> None:
    """Print the build log."""
    with connect(url, token) as client:
        text = client.build_log(process_id)
    if as_json:
        print_json({"process": process_id, "log": text})
    else:
        sys.stdout.write(text)

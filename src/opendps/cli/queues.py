"""``dps queues``: the queues with their limits, depth and activity."""

from __future__ import annotations

from rich.table import Table

from opendps.cli.common import (
    AsJson,
    Token,
    Url,
    connect,
    err,
    human_size,
    print_json,
    print_table,
)


def _warn(text: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {text}")


def queues_command(url: str = Url, token: str | None = Token, as_json: bool = AsJson) -> None:
    """Queues with their limits, depth and activity."""
    with connect(url, token) as client:
        queues = client.queues()
    if as_json:
        print_json(queues)
        return
    table = Table(
        "queue",
        "memory",
        "cpus",
        "time limit",
        "slots",
        "waiting",
        "running",
        "oldest wait",
        "workers",
    )
    for q in queues:
        name = q["name"] + (" (default)" if q.get("default") else "")
        oldest = q.get("oldest_waiting_seconds")
        table.add_row(
            name,
            human_size(q.get("memory")),
            str(q.get("cpus") or ""),
            f"{q['time_limit']:g} s" if q.get("time_limit") else "",
            str(q.get("slots")),
            str(q.get("depth", 0)),
            str(q.get("running", 0)),
            f"{oldest:.0f} s" if oldest is not None else "",
            str(len(q["workers"]) if isinstance(q.get("workers"), list) else q.get("workers", "")),
        )
    print_table(table)
    for q in queues:
        if q.get("warning"):
            _warn(q["warning"])

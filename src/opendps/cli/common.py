"""What every ``dps`` command shares: exit codes, the consoles, the common options
(``--url``, ``--token``, ``--json``, ...), settings loading, the server connection and its
errors, and output helpers (JSON, tables, statuses, sizes)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from opendps.client import DEFAULT_URL, APIError, Client, ServerUnreachable
from opendps.settings import Settings

EXIT_FAILED = 1  # a job or batch ended failed/dismissed, a build failed, a server error
EXIT_USAGE = 2  # bad usage or input: the server answered 4xx (click uses 2 for usage too)
EXIT_UNREACHABLE = 3  # no answer from the server
PIPE_WIDTH = 240  # table width when stdout is not a terminal

# Rich writes to whatever sys.stdout/sys.stderr are at print time (test runners swap them).
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

# No envvar here: Settings reads DPS_DATA_DIR itself, below the config file; a flag given
# on the command line overrides both (Settings.load).
DataDir = typer.Option(
    None,
    "--data-dir",
    help="Where the database, storage and work dirs live (env DPS_DATA_DIR).",
)
ConfigFile = typer.Option(None, "--config", envvar="DPS_CONFIG", help="YAML settings file.")
Url = typer.Option(DEFAULT_URL, "--url", envvar="DPS_URL", help="The server's base URL.")
Token = typer.Option(None, "--token", envvar="DPS_TOKEN", help="Bearer token for the server.")
AsJson = typer.Option(False, "--json", help="Print JSON (for scripts) instead of tables.")
Inputs = typer.Option(
    None,
    "--input",
    "-i",
    metavar="NAME=VALUE",
    help="An input value; repeat a name for a list (several file URLs). NAME:=JSON passes "
    "a JSON value (number, object, list).",
)
Queue = typer.Option(None, "--queue", "-q", help="Resource queue (default: the algorithm's).")
Tag = typer.Option(None, "--tag", "-t", help="Tag (also a level of the output path).")
Priority = typer.Option(5, "--priority", "-p", min=0, max=9, help="0..9, 9 runs first.")
Timeout = typer.Option(None, "--timeout", help="Give up waiting after this many seconds.")
JobId = typer.Argument(..., metavar="JOB_ID")
BatchId = typer.Argument(..., metavar="BATCH_ID")

STATUS_STYLE = {
    "accepted": "dim",
    "running": "cyan",
    "successful": "green",
    "failed": "red",
    "dismissed": "yellow",
    "queued": "dim",
    "building": "cyan",
    "ready": "green",
}


def load_settings(config: Path | None, **overrides: object) -> Settings:
    try:
        return Settings.load(config, **overrides)
    except Exception as exc:  # pydantic / YAML errors: say what to fix, no traceback
        raise typer.BadParameter(str(exc)) from exc


def setup_logging(settings: Settings | None = None) -> None:
    from opendps.logs import setup_logging as configure

    configure(settings.log_format if settings else "text")


def fail(message: str, code: int) -> NoReturn:
    err.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


@contextmanager
def connect(url: str, token: str | None) -> Iterator[Client]:
    """A client whose errors end the command with the server's message and an exit code."""
    client = Client(url, token)
    try:
        yield client
    except ServerUnreachable as exc:
        fail(exc.detail, EXIT_UNREACHABLE)
    except APIError as exc:
        fail(exc.detail, EXIT_USAGE if 400 <= exc.status < 500 else EXIT_FAILED)
    except TimeoutError as exc:
        fail(str(exc), EXIT_FAILED)
    finally:
        client.close()


def print_json(data: Any) -> None:
    # Plain write: rich would wrap long lines and break the JSON.
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_table(table: Table) -> None:
    # Piped output is not cut at 80 columns: ids must stay whole for grep and cut.
    console = out if out.is_terminal else Console(width=PIPE_WIDTH, highlight=False)
    console.print(table)


def styled(status: str | None) -> str:
    status = status or "?"
    return f"[{STATUS_STYLE.get(status, 'default')}]{status}[/]"


def key_values(pairs: list[tuple[str, Any]]) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for key, value in pairs:
        if value not in (None, "", []):
            grid.add_row(key, value if isinstance(value, str) else escape(str(value)))
    print_table(grid)


def human_size(n: float | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def metrics_summary(m: Mapping[str, Any]) -> str:
    """One line of the numbers people look at first."""
    parts = []
    if m.get("run_seconds") is not None:
        parts.append(f"ran {m['run_seconds']:.1f} s")
    if m.get("queue_wait_seconds") is not None:
        parts.append(f"waited {m['queue_wait_seconds']:.1f} s")
    if m.get("cpu_user_seconds") is not None:
        parts.append(f"cpu {m['cpu_user_seconds'] + m.get('cpu_system_seconds', 0):.1f} s")
    if m.get("peak_memory_bytes"):
        parts.append(f"peak memory {human_size(m['peak_memory_bytes'])}")
    localize = m.get("localize") or {}
    if localize.get("files"):
        parts.append(f"inputs {localize['files']} file(s) {human_size(localize.get('bytes'))}")
    stage = m.get("stage") or {}
    if stage.get("files"):
        parts.append(f"outputs {stage['files']} file(s) {human_size(stage.get('bytes'))}")
    return ", ".join(parts) or "no metrics"

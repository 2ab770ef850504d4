"""``dps batch ...``: submit and manage batches of jobs."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer

from opendps.cli.common import (
    EXIT_FAILED,
    AsJson,
    BatchId,
    Priority,
    Queue,
    Tag,
    Timeout,
    Token,
    Url,
    connect,
    err,
    out,
    print_json,
    styled,
)
from opendps.cli.inputs import read_batch_inputs
from opendps.client import TERMINAL_STATUSES, Client

batch_app = typer.Typer(help="Submit and manage batches of jobs.", no_args_is_help=True)


def _batch_done(info: Mapping[str, Any]) -> int:
    counts = info.get("counts") or {}
    return sum(counts.get(s, 0) for s in TERMINAL_STATUSES)


def _counts_text(info: Mapping[str, Any]) -> str:
    counts = info.get("counts") or {}
    return "  ".join(f"{styled(s)} {n}" for s, n in counts.items() if n)


def _wait_batch(
    client: Client, batch_id: str, timeout: float | None, quiet: bool, poll: float = 1.0
) -> dict[str, Any]:
    """Poll the batch's counts to the end, with a progress bar of finished/total."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    deadline = None if timeout is None else time.monotonic() + timeout
    info = client.batch_status(batch_id)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=quiet,
    ) as progress:
        task = progress.add_task(f"batch {batch_id[:8]}", total=info["total"])
        while True:
            progress.update(
                task,
                completed=_batch_done(info),
                description=f"batch {batch_id[:8]} {_counts_text(info)}",
            )
            if _batch_done(info) >= info["total"]:
                return info
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"batch {batch_id} is not finished after {timeout} s")
            time.sleep(poll)
            info = client.batch_status(batch_id)


def _batch_exit(info: Mapping[str, Any]) -> None:
    counts = info.get("counts") or {}
    if counts.get("failed") or counts.get("dismissed"):
        raise typer.Exit(EXIT_FAILED)


def _print_batch(info: Mapping[str, Any]) -> None:
    out.print(
        f"batch {info.get('batchID')}: {_batch_done(info)} of {info.get('total')} "
        f"finished  {_counts_text(info)}"
    )


@batch_app.command("submit")
def batch_submit(
    process_id: str = typer.Argument(..., metavar="ALGORITHM[:VERSION]"),
    inputs: Path = typer.Option(
        ...,
        "--inputs",
        exists=True,
        dir_okay=False,
        help="CSV (header = input names) or JSON lines.",
    ),
    queue: str | None = Queue,
    tag: str | None = Tag,
    priority: int = Priority,
    wait: bool = typer.Option(False, "--wait", "-w", help="Wait, with a progress bar."),
    timeout: float | None = Timeout,
    url: str = Url,
    token: str | None = Token,
    as_json: bool = AsJson,
) -> None:
    """Submit one job per row of a CSV or JSON-lines file."""
    rows = read_batch_inputs(inputs)
    with connect(url, token) as client:
        info = client.submit_batch(process_id, rows, queue=queue, tag=tag, priority=priority)
        if not as_json:
            err.print(f"batch {info['batchID']}: {info['total']} job(s) submitted")
        if wait:
            info = {**info, **_wait_batch(client, info["batchID"], timeout, quiet=as_json)}
    if as_json:
        print_json(info)
    else:
        sys.stdout.write(f"{info['batchID']}\n")
        if wait:
            _print_batch(info)
    if wait:
        _batch_exit(info)


@batch_app.command("status")
def batch_status(
    batch_id: str = BatchId,
    wait: bool = typer.Option(False, "--wait", "-w", help="Wait for every job."),
    timeout: float | None = Timeout,
    url: str = Url,
    token: str | None = Token,
    as_json: bool = AsJson,
) -> None:
    """Counts of a batch's jobs per status."""
    with connect(url, token) as client:
        info = (
            _wait_batch(client, batch_id, timeout, quiet=as_json)
            if wait
            else client.batch_status(batch_id)
        )
    print_json(info) if as_json else _print_batch(info)
    if wait:
        _batch_exit(info)


@batch_app.command("cancel")
def batch_cancel(
    batch_id: str = BatchId, url: str = Url, token: str | None = Token, as_json: bool = AsJson
) -> None:
    """Cancel every unfinished job of a batch."""
    with connect(url, token) as client:
        info = client.cancel_batch(batch_id)
    print_json(info) if as_json else _print_batch(info)


@batch_app.command("retry")
def batch_retry(
    batch_id: str = BatchId, url: str = Url, token: str | None = Token, as_json: bool = AsJson
) -> None:
    """Resubmit a batch's failed and dismissed jobs as a new batch."""
    with connect(url, token) as client:
        info = client.retry_batch(batch_id)
    if as_json:
        print_json(info)
    elif not info.get("jobIDs"):
        out.print("nothing to retry")
    else:
        out.print(f"batch {info['batchID']}: {len(info['jobIDs'])} job(s) resubmitted")

"""``dps batch ...``: submit and watch campaigns (batches of jobs), report on them."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer

from opendps.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    AsJson,
    BatchId,
    Inputs,
    Queue,
    Tag,
    Timeout,
    Token,
    Url,
    connect,
    err,
    fail,
    human_size,
    out,
    print_json,
    styled,
)
from opendps.cli.inputs import parse_inputs
from opendps.client import TERMINAL_STATUSES, Client
from opendps.service.batch_report import render_text

batch_app = typer.Typer(help="Submit and manage batches of jobs.", no_args_is_help=True)


def _batch_done(info: Mapping[str, Any]) -> int:
    counts = info.get("counts") or {}
    return sum(counts.get(s, 0) for s in TERMINAL_STATUSES)


def _counts_text(info: Mapping[str, Any]) -> str:
    counts = info.get("counts") or {}
    return "  ".join(f"{styled(s)} {n}" for s, n in counts.items() if n)


def _eta_text(seconds: float | None) -> str:
    if seconds is None:
        return "eta -"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"eta {hours}h{rest // 60:02d}m" if hours else f"eta {rest // 60}m{rest % 60:02d}s"


def _stats_text(info: Mapping[str, Any]) -> str:
    stats = info.get("stats") or {}
    if not stats:
        return ""
    return f"{stats.get('rate_per_hour', 0):g}/h  {_eta_text(stats.get('eta_seconds'))}"


def _wait_batch(
    client: Client, batch_id: str, timeout: float | None, quiet: bool, poll: float = 1.0
) -> dict[str, Any]:
    """Poll the batch to the end: a live progress bar of finished/total with the counts,
    the finishing rate and the ETA."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    deadline = None if timeout is None else time.monotonic() + timeout
    info = client.batch_status(batch_id)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[rate]}"),
        console=err,
        disable=quiet,
    ) as progress:
        task = progress.add_task(f"batch {batch_id[:8]}", total=info["total"], rate="")
        while True:
            progress.update(
                task,
                completed=_batch_done(info),
                description=f"batch {batch_id[:8]} {_counts_text(info)}",
                rate=_stats_text(info),
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
    stats = info.get("stats")
    if not stats:
        return
    run = stats.get("run_seconds") or {}
    memory = stats.get("peak_memory_bytes") or {}

    def secs(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}s"

    out.print(
        f"  rate {stats.get('rate_per_hour', 0):g} jobs/hour  {_eta_text(stats.get('eta_seconds'))}"
    )
    out.print(
        f"  run time p50 {secs(run.get('p50'))}  p95 {secs(run.get('p95'))}  "
        f"max {secs(run.get('max'))}   peak memory p50 {human_size(memory.get('p50')) or '-'}  "
        f"max {human_size(memory.get('max')) or '-'}"
    )
    if stats.get("by_reason"):
        reasons = "  ".join(f"{r} {n}" for r, n in stats["by_reason"].items())
        out.print(f"  failures: {reasons}")


def _notify(email: list[str] | None, webhook: str | None, on: list[str] | None) -> dict | None:
    if not email and not webhook:
        return None
    notify: dict[str, Any] = {}
    if email:
        notify["email"] = email
    if webhook:
        notify["webhook"] = webhook
    if on:
        notify["on"] = on
    return notify


@batch_app.command("submit")
def batch_submit(
    process_id: str = typer.Argument(..., metavar="ALGORITHM[:VERSION]"),
    inputs: Path | None = typer.Option(
        None,
        "--inputs",
        exists=True,
        dir_okay=False,
        help="CSV (header = input names, optional queue/tag/priority columns) or JSON lines.",
    ),
    input_glob: str | None = typer.Option(
        None,
        "--input-glob",
        help="One job per object matching this glob (s3://bucket/granules/*.tif, a local "
        "or file:// glob); its URL goes to --input-name.",
    ),
    input_name: str | None = typer.Option(
        None, "--input-name", help="The file input that gets each --input-glob match."
    ),
    shared: list[str] | None = Inputs,
    queue: str | None = Queue,
    tag: str | None = Tag,
    priority: int | None = typer.Option(
        None, "--priority", "-p", min=0, max=9, help="0..9, 9 runs first (rows may set their own)."
    ),
    max_running: int | None = typer.Option(
        None, "--max-running", min=1, help="At most this many of the batch's jobs run at once."
    ),
    notify_email: list[str] | None = typer.Option(
        None, "--notify-email", help="E-mail this address the report when the batch ends."
    ),
    notify_webhook: str | None = typer.Option(
        None, "--notify-webhook", help="POST the batch document to this URL when it ends."
    ),
    notify_on: list[str] | None = typer.Option(
        None, "--notify-on", help="finished (any end, the default) and/or failed."
    ),
    dedup: bool = typer.Option(False, "--dedup", help="Rows that already ran answer that job."),
    wait: bool = typer.Option(False, "--wait", "-w", help="Wait, with a progress bar."),
    timeout: float | None = Timeout,
    url: str = Url,
    token: str | None = Token,
    as_json: bool = AsJson,
) -> None:
    """Submit one job per row of a CSV or JSON-lines file, or per object of a glob."""
    if (inputs is None) == (input_glob is None):
        fail("give either --inputs FILE or --input-glob PATTERN --input-name NAME", EXIT_USAGE)
    if input_glob is not None and not input_name:
        fail("--input-glob needs --input-name: the file input each match goes to", EXIT_USAGE)
    if shared and inputs is not None:
        fail("-i goes with --input-glob (a file's rows hold their own inputs)", EXIT_USAGE)
    options: dict[str, Any] = {
        "queue": queue,
        "tag": tag,
        "priority": priority,
        "max_running": max_running,
        "notify": _notify(notify_email, notify_webhook, notify_on),
        "dedup": dedup,
    }
    with connect(url, token) as client:
        if inputs is not None:
            info = client.submit_batch_file(process_id, inputs, **options)
        else:
            assert input_glob is not None and input_name is not None
            info = client.submit_glob(
                process_id, input_glob, input_name, inputs=parse_inputs(shared), **options
            )
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
    """Counts of a batch's jobs per status, its rate, ETA, run times and failures."""
    with connect(url, token) as client:
        info = (
            _wait_batch(client, batch_id, timeout, quiet=as_json)
            if wait
            else client.batch_status(batch_id)
        )
    print_json(info) if as_json else _print_batch(info)
    if wait:
        _batch_exit(info)


@batch_app.command("wait")
def batch_wait(
    batch_id: str = BatchId,
    timeout: float | None = Timeout,
    url: str = Url,
    token: str | None = Token,
    as_json: bool = AsJson,
) -> None:
    """Wait for a batch with a live progress bar (counts, rate, ETA); exit 1 if any job
    failed or was dismissed."""
    with connect(url, token) as client:
        info = _wait_batch(client, batch_id, timeout, quiet=as_json)
    print_json(info) if as_json else _print_batch(info)
    _batch_exit(info)


@batch_app.command("report")
def batch_report(
    batch_id: str = BatchId, url: str = Url, token: str | None = Token, as_json: bool = AsJson
) -> None:
    """The batch's report: counts, rates, duration, failures by reason with an example."""
    with connect(url, token) as client:
        report = client.batch_report(batch_id)
    if as_json:
        print_json(report)
    else:
        sys.stdout.write(render_text(report))


@batch_app.command("cancel")
def batch_cancel(
    batch_id: str = BatchId, url: str = Url, token: str | None = Token, as_json: bool = AsJson
) -> None:
    """Cancel every unfinished job of a batch (answers at once)."""
    with connect(url, token) as client:
        info = client.cancel_batch(batch_id)
    print_json(info) if as_json else _print_batch(info)


@batch_app.command("retry")
def batch_retry(
    batch_id: str = BatchId,
    reason: list[str] | None = typer.Option(
        None, "--reason", "-r", help="Only jobs that ended for this reason (repeatable)."
    ),
    queue: str | None = typer.Option(None, "--queue", "-q", help="Move them to this queue."),
    url: str = Url,
    token: str | None = Token,
    as_json: bool = AsJson,
) -> None:
    """Put a batch's failed and dismissed jobs back in the queue (same jobs, same batch)."""
    with connect(url, token) as client:
        info = client.retry_batch(batch_id, reasons=reason or None, queue=queue)
    if as_json:
        print_json(info)
    elif not info.get("jobIDs"):
        out.print("nothing to retry")
    else:
        out.print(f"batch {info['batchID']}: {len(info['jobIDs'])} job(s) resubmitted")

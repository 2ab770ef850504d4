"""``dps job ...``: submit, watch, list and cancel jobs."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Column, Table

from opendps.cli.common import (
    EXIT_FAILED,
    AsJson,
    Inputs,
    JobId,
    Priority,
    Queue,
    Tag,
    Timeout,
    Token,
    Url,
    connect,
    err,
    key_values,
    metrics_summary,
    out,
    print_json,
    print_table,
    styled,
)
from opendps.cli.inputs import parse_inputs
from opendps.client import Client

job_app = typer.Typer(help="Submit, watch, list and cancel jobs.", no_args_is_help=True)


def _wait_job(client: Client, job_id: str, timeout: float | None, quiet: bool) -> dict[str, Any]:
    """Poll to the end, printing each status change (to stderr, beside a spinner)."""
    if quiet:
        return client.wait(job_id, timeout=timeout)
    short = job_id[:8]
    with err.status(f"job {short}: waiting") as spinner:

        def update(info: dict[str, Any]) -> None:
            message = f" — {escape(info['message'])}" if info.get("message") else ""
            err.print(f"{time.strftime('%H:%M:%S')} job {short} {styled(info['status'])}{message}")
            spinner.update(f"job {short}: {info['status']}")

        return client.wait(job_id, timeout=timeout, on_update=update)


def _job_exit(info: dict[str, Any]) -> None:
    if info.get("status") != "successful":
        raise typer.Exit(EXIT_FAILED)


def _print_status(info: dict[str, Any]) -> None:
    why = ", ".join(
        x for x in (info.get("reason"), info.get("phase") and f"in {info['phase']}") if x
    )
    key_values(
        [
            ("job", info["jobID"]),
            ("process", escape(info.get("processID") or "")),
            ("status", styled(info["status"]) + (f" ({why})" if why else "")),
            ("message", escape(info.get("message") or "")),
            ("queue", f"{info.get('queue')}  priority {info.get('priority')}"),
            ("tags", ", ".join(info.get("tags") or [])),
            ("batch", info.get("batch")),
            ("created", info.get("created")),
            ("started", info.get("started")),
            ("finished", info.get("finished")),
            ("exit code", info.get("exitCode")),
        ]
    )


@job_app.command("submit")
def job_submit(
    process_id: str = typer.Argument(..., metavar="ALGORITHM[:VERSION]"),
    inputs: list[str] | None = Inputs,
    queue: str | None = Queue,
    tag: str | None = Tag,
    priority: int = Priority,
    dedup: bool = typer.Option(False, "--dedup", help="Answer an identical existing job."),
    wait: bool = typer.Option(False, "--wait", "-w", help="Wait for the job to end."),
    timeout: float | None = Timeout,
    url: str = Url,
    token: str | None = Token,
    as_json: bool = AsJson,
) -> None:
    """Submit a job. With --wait, exit 1 unless it ends successful."""
    values = parse_inputs(inputs)
    with connect(url, token) as client:
        info = client.submit(
            process_id, values, queue=queue, tag=tag, priority=priority, dedup=dedup
        )
        if not as_json:
            deduped = " (an identical job already existed)" if info.get("deduped") else ""
            err.print(
                f"job {info['jobID']} {styled(info['status'])} on {info.get('queue')}{deduped}"
            )
        if wait:
            info = _wait_job(client, info["jobID"], timeout, quiet=as_json)
    if as_json:
        print_json(info)
    else:
        sys.stdout.write(info["jobID"] + "\n")  # alone on stdout, for $(dps job submit …)
    if wait:
        _job_exit(info)


@job_app.command("status")
def job_status(
    job_id: str = JobId, url: str = Url, token: str | None = Token, as_json: bool = AsJson
) -> None:
    """Show a job's status."""
    with connect(url, token) as client:
        info = client.status(job_id)
    print_json(info) if as_json else _print_status(info)


@job_app.command("wait")
def job_wait(
    job_id: str = JobId,
    timeout: float | None = Timeout,
    url: str = Url,
    token: str | None = Token,
    as_json: bool = AsJson,
) -> None:
    """Wait for a job to end; exit 1 unless it is successful."""
    with connect(url, token) as client:
        info = _wait_job(client, job_id, timeout, quiet=as_json)
    print_json(info) if as_json else _print_status(info)
    _job_exit(info)


@job_app.command("logs")
def job_logs(
    job_id: str = JobId,
    follow: bool = typer.Option(False, "--follow", "-f", help="Stream until it ends."),
    url: str = Url,
    token: str | None = Token,
    as_json: bool = AsJson,
) -> None:
    """Print a job's stdout (to stdout) and stderr (to stderr)."""
    with connect(url, token) as client:
        if follow:
            for stream, text in client.follow_logs(job_id):
                if as_json:
                    sys.stdout.write(json.dumps({"stream": stream, "text": text}) + "\n")
                else:
                    (sys.stdout if stream == "stdout" else sys.stderr).write(text)
                sys.stdout.flush()
            return
        logs = client.logs(job_id)
    if as_json:
        print_json(logs)
    else:
        sys.stdout.write(logs.get("stdout", ""))
        sys.stderr.write(logs.get("stderr", ""))


@job_app.command("outputs")
def job_outputs(
    job_id: str = JobId,
    download: Path | None = typer.Option(
        None,
        "--download",
        "-d",
        file_okay=False,
        help="Download every output file into this folder.",
    ),
    url: str = Url,
    token: str | None = Token,
    as_json: bool = AsJson,
) -> None:
    """List a job's staged output files, or download them."""
    with connect(url, token) as client:
        listing = client.outputs(job_id)
        if download is not None:
            listing["downloaded"] = [str(p) for p in client.download_outputs(job_id, download)]
    if as_json:
        print_json(listing)
        return
    table = Table("path", "size", "url", title=escape(listing.get("location") or ""))
    for item in listing["outputs"]:
        table.add_row(escape(item["path"]), str(item["size"]), escape(item.get("url") or ""))
    print_table(table)
    if download is not None:
        err.print(f"downloaded {len(listing['downloaded'])} file(s) into {escape(str(download))}")


@job_app.command("metrics")
def job_metrics(
    job_id: str = JobId, url: str = Url, token: str | None = Token, as_json: bool = AsJson
) -> None:
    """Timings, resource use and io of a job."""
    with connect(url, token) as client:
        metrics = client.metrics(job_id)
    if as_json:
        print_json(metrics)
    else:
        out.print(metrics_summary(metrics))


@job_app.command("cancel")
def job_cancel(
    job_id: str = JobId, url: str = Url, token: str | None = Token, as_json: bool = AsJson
) -> None:
    """Cancel (dismiss) a job."""
    with connect(url, token) as client:
        info = client.cancel(job_id)
    if as_json:
        print_json(info)
    else:
        out.print(f"job {job_id} {styled(info['status'])} {escape(info.get('message') or '')}")


@job_app.command("list")
def job_list(
    status: list[str] | None = typer.Option(None, "--status", "-s", help="Repeatable."),
    algorithm: str | None = typer.Option(None, "--algorithm", "-a", metavar="NAME[:VERSION]"),
    queue: str | None = typer.Option(None, "--queue", "-q"),
    tag: str | None = typer.Option(None, "--tag", "-t"),
    batch: str | None = typer.Option(None, "--batch", "-b"),
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=10000),
    every: bool = typer.Option(False, "--all", help="Every matching job (all pages)."),
    url: str = Url,
    token: str | None = Token,
    as_json: bool = AsJson,
) -> None:
    """List jobs, newest first."""
    filters = {
        "status": status,
        "process_id": algorithm,
        "queue": queue,
        "tag": tag,
        "batch": batch,
    }
    with connect(url, token) as client:
        if every:
            jobs = list(client.iter_jobs(page_size=500, **filters))
            matched = len(jobs)
        else:
            page = client.list_jobs(limit=limit, **filters)
            jobs, matched = page["jobs"], page["numberMatched"]
    if as_json:
        print_json({"jobs": jobs, "numberMatched": matched})
        return
    table = Table(Column("job", no_wrap=True), "process", "status", "queue", "tags", "created")
    for j in jobs:
        table.add_row(
            j["jobID"],
            escape(j.get("processID") or ""),
            styled(j["status"]),
            j.get("queue") or "",
            escape(",".join(j.get("tags") or [])),
            (j.get("created") or "")[:19],
        )
    print_table(table)
    err.print(
        f"{len(jobs)} of {matched} job(s)"
        + ("" if every or len(jobs) >= matched else "; --all lists every one")
    )

"""``dps``: the command line (DESIGN §7).

``server`` and ``worker`` run opendps; ``run-local`` runs one algorithm here with no
server. Every other command talks to a server through :mod:`opendps.client` and takes
``--url`` (``DPS_URL``), ``--token`` (``DPS_TOKEN``) and ``--json``.

Exit codes: 0 ok; 1 a job (or batch) ended failed or dismissed, a build failed, or the
server failed; 2 bad usage or input (the server's 4xx answers, with its ``detail``);
3 the server could not be reached.
"""

from __future__ import annotations

import csv
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from opendps.client import DEFAULT_URL, TERMINAL_STATUSES, APIError, Client, ServerUnreachable
from opendps.settings import Settings

EXIT_FAILED = 1  # a job or batch ended failed/dismissed, a build failed, a server error
EXIT_USAGE = 2  # bad usage or input: the server answered 4xx (click uses 2 for usage too)
EXIT_UNREACHABLE = 3  # no answer from the server
PIPE_WIDTH = 240  # table width when stdout is not a terminal

app = typer.Typer(
    help="opendps: run algorithms from git repositories as jobs on queues.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
algorithm_app = typer.Typer(help="Register, inspect and delete algorithms.", no_args_is_help=True)
job_app = typer.Typer(help="Submit, watch, list and cancel jobs.", no_args_is_help=True)
batch_app = typer.Typer(help="Submit and manage batches of jobs.", no_args_is_help=True)
app.add_typer(algorithm_app, name="algorithm")
app.add_typer(job_app, name="job")
app.add_typer(batch_app, name="batch")

# Rich writes to whatever sys.stdout/sys.stderr are at print time (test runners swap them).
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

DataDir = typer.Option(
    None,
    "--data-dir",
    envvar="DPS_DATA_DIR",
    help="Where the database, storage and work dirs live.",
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


def _settings(config: Path | None, **overrides: object) -> Settings:
    try:
        return Settings.load(config, **overrides)
    except Exception as exc:  # pydantic / YAML errors: say what to fix, no traceback
        raise typer.BadParameter(str(exc)) from exc


def _logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@app.command()
def server(
    host: str = typer.Option("127.0.0.1", "--host", envvar="DPS_HOST"),
    port: int = typer.Option(8000, "--port", envvar="DPS_PORT"),
    data_dir: Path | None = DataDir,
    config: Path | None = ConfigFile,
) -> None:
    """Start the embedded DPS: API + UI + local executor in one process."""
    import uvicorn

    from opendps.api.app import create_app

    _logging()
    settings = _settings(config, host=host, port=port, data_dir=data_dir)
    typer.echo(f"opendps {settings.base_url}  (data in {settings.data_dir})")
    uvicorn.run(
        create_app(settings), host=host, port=port, log_level="info", timeout_graceful_shutdown=5
    )


@app.command()
def worker(
    queue: list[str] | None = typer.Option(
        None, "--queue", "-q", help="Queues to serve (default all)."
    ),
    data_dir: Path | None = DataDir,
    config: Path | None = ConfigFile,
) -> None:
    """Run jobs from the shared store (the server may run with DPS_RUN_JOBS=false)."""
    from opendps.executors.local import LocalExecutor
    from opendps.service.context import Services

    _logging()
    settings = _settings(config, data_dir=data_dir)
    services = Services(settings)
    services.catalog.sync_queues(settings.queues)
    executor = LocalExecutor(services, queues=queue or None)
    executor.start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    typer.echo(f"worker serving {', '.join(executor.queue_slots)}")
    stop.wait()
    executor.stop()


# -- shared helpers -----------------------------------------------------------------------


def _fail(message: str, code: int) -> NoReturn:
    err.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


@contextmanager
def _connect(url: str, token: str | None) -> Iterator[Client]:
    """A client whose errors end the command with the server's message and an exit code."""
    client = Client(url, token)
    try:
        yield client
    except ServerUnreachable as exc:
        _fail(exc.detail, EXIT_UNREACHABLE)
    except APIError as exc:
        _fail(exc.detail, EXIT_USAGE if 400 <= exc.status < 500 else EXIT_FAILED)
    except TimeoutError as exc:
        _fail(str(exc), EXIT_FAILED)
    finally:
        client.close()


def _print_json(data: Any) -> None:
    # Plain write: rich would wrap long lines and break the JSON.
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _print_table(table: Table) -> None:
    # Piped output is not cut at 80 columns: ids must stay whole for grep and cut.
    console = out if out.is_terminal else Console(width=PIPE_WIDTH, highlight=False)
    console.print(table)


def _styled(status: str | None) -> str:
    status = status or "?"
    return f"[{STATUS_STYLE.get(status, 'default')}]{status}[/]"


def parse_inputs(pairs: list[str] | None) -> dict[str, Any]:
    """``-i NAME=VALUE`` pairs -> inputs; a repeated name collects a list; ``NAME:=JSON``
    decodes the value as JSON."""
    inputs: dict[str, Any] = {}
    for pair in pairs or []:
        name, sep, raw = pair.partition("=")
        value: Any = raw
        if name.endswith(":"):
            name = name[:-1]
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise typer.BadParameter(
                    f"{pair!r}: not JSON after ':=' ({exc})", param_hint="'-i'"
                ) from None
        if not sep or not name.strip():
            raise typer.BadParameter(f"{pair!r}: use NAME=VALUE", param_hint="'-i'")
        name = name.strip()
        if name in inputs:
            previous = inputs[name]
            inputs[name] = [*(previous if isinstance(previous, list) else [previous]), value]
        else:
            inputs[name] = value
    return inputs


def read_batch_inputs(path: Path) -> list[dict[str, Any]]:
    """A CSV file (header = input names, empty cells left out) or JSON lines (one inputs
    object per line) -> one inputs mapping per job."""
    text = path.read_text()
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise typer.BadParameter(f"{path}:{number}: not JSON ({exc})") from None
            if not isinstance(row, dict):
                raise typer.BadParameter(f"{path}:{number}: expected an object of inputs")
            rows.append(row)
    else:
        reader = csv.DictReader(text.splitlines())
        rows = []
        for number, row in enumerate(reader, 2):
            if None in row:
                raise typer.BadParameter(f"{path}:{number}: more cells than header names")
            rows.append({k.strip(): v for k, v in row.items() if k and v not in (None, "")})
    if not rows:
        raise typer.BadParameter(f"{path}: no jobs in it")
    return rows


def _key_values(pairs: list[tuple[str, Any]]) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for key, value in pairs:
        if value not in (None, "", []):
            grid.add_row(key, value if isinstance(value, str) else escape(str(value)))
    _print_table(grid)


# -- algorithms ---------------------------------------------------------------------------


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
    with _connect(url, token) as client:
        summary = client.register(file, replace=not no_replace)
        if wait:
            summary = _wait_build(client, summary["id"], quiet=as_json)
        if as_json:
            _print_json(summary)
        else:
            build = (summary.get("build") or {}).get("status", "ready")
            out.print(f"registered {escape(summary['id'])} (build {_styled(build)})")
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
    with _connect(url, token) as client:
        processes = client.list_algorithms()
    if as_json:
        _print_json(processes)
        return
    table = Table("process", "build", "owner", "updated", "description")
    for p in processes:
        build = (p.get("build") or {}).get("status", "ready")
        table.add_row(
            escape(p["id"]),
            _styled(build),
            p.get("owner") or "",
            (p.get("updated") or "")[:19],
            escape(p.get("description") or ""),
        )
    _print_table(table)


@algorithm_app.command("show")
def algorithm_show(
    process_id: str = typer.Argument(..., metavar="NAME[:VERSION]"),
    url: str = Url,
    token: str | None = Token,
    as_json: bool = AsJson,
) -> None:
    """Describe an algorithm: inputs, repository, build."""
    with _connect(url, token) as client:
        d = client.describe(process_id)
    if as_json:
        _print_json(d)
        return
    build = d.get("build") or {}
    _key_values(
        [
            ("process", escape(d["id"])),
            ("description", escape(d.get("description") or "")),
            ("repository", d.get("repository_url")),
            ("run command", d.get("run_command")),
            ("queue", d.get("queue")),
            (
                "build",
                f"{_styled(build.get('status', 'ready'))} {build.get('commit') or ''}".strip(),
            ),
            ("build message", build.get("message")),
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
    _print_table(table)


@algorithm_app.command("delete")
def algorithm_delete(
    process_id: str = typer.Argument(..., metavar="NAME:VERSION"),
    url: str = Url,
    token: str | None = Token,
    as_json: bool = AsJson,
) -> None:
    """Delete (undeploy) an algorithm version."""
    with _connect(url, token) as client:
        client.delete_algorithm(process_id)
    if as_json:
        _print_json({"deleted": process_id})
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
    with _connect(url, token) as client:
        text = client.build_log(process_id)
    if as_json:
        _print_json({"process": process_id, "log": text})
    else:
        sys.stdout.write(text)


# -- jobs ---------------------------------------------------------------------------------


def _wait_job(client: Client, job_id: str, timeout: float | None, quiet: bool) -> dict[str, Any]:
    """Poll to the end, printing each status change (to stderr, beside a spinner)."""
    if quiet:
        return client.wait(job_id, timeout=timeout)
    short = job_id[:8]
    with err.status(f"job {short}: waiting") as spinner:

        def update(info: dict[str, Any]) -> None:
            message = f" — {escape(info['message'])}" if info.get("message") else ""
            err.print(f"{time.strftime('%H:%M:%S')} job {short} {_styled(info['status'])}{message}")
            spinner.update(f"job {short}: {info['status']}")

        return client.wait(job_id, timeout=timeout, on_update=update)


def _job_exit(info: dict[str, Any]) -> None:
    if info.get("status") != "successful":
        raise typer.Exit(EXIT_FAILED)


def _print_status(info: dict[str, Any]) -> None:
    why = ", ".join(
        x for x in (info.get("reason"), info.get("phase") and f"in {info['phase']}") if x
    )
    _key_values(
        [
            ("job", info["jobID"]),
            ("process", escape(info.get("processID") or "")),
            ("status", _styled(info["status"]) + (f" ({why})" if why else "")),
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
    with _connect(url, token) as client:
        info = client.submit(
            process_id, values, queue=queue, tag=tag, priority=priority, dedup=dedup
        )
        if not as_json:
            deduped = " (an identical job already existed)" if info.get("deduped") else ""
            err.print(
                f"job {info['jobID']} {_styled(info['status'])} on {info.get('queue')}{deduped}"
            )
        if wait:
            info = _wait_job(client, info["jobID"], timeout, quiet=as_json)
    if as_json:
        _print_json(info)
    else:
        sys.stdout.write(info["jobID"] + "\n")  # alone on stdout, for $(dps job submit …)
    if wait:
        _job_exit(info)


@job_app.command("status")
def job_status(
    job_id: str = JobId, url: str = Url, token: str | None = Token, as_json: bool = AsJson
) -> None:
    """Show a job's status."""
    with _connect(url, token) as client:
        info = client.status(job_id)
    _print_json(info) if as_json else _print_status(info)


@job_app.command("wait")
def job_wait(
    job_id: str = JobId,
    timeout: float | None = Timeout,
    url: str = Url,
    token: str | None = Token,
    as_json: bool = AsJson,
) -> None:
    """Wait for a job to end; exit 1 unless it is successful."""
    with _connect(url, token) as client:
        info = _wait_job(client, job_id, timeout, quiet=as_json)
    _print_json(info) if as_json else _print_status(info)
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
    with _connect(url, token) as client:
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
        _print_json(logs)
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
    with _connect(url, token) as client:
        listing = client.outputs(job_id)
        if download is not None:
            listing["downloaded"] = [str(p) for p in client.download_outputs(job_id, download)]
    if as_json:
        _print_json(listing)
        return
    table = Table("path", "size", "url", title=escape(listing.get("location") or ""))
    for item in listing["outputs"]:
        table.add_row(escape(item["path"]), str(item["size"]), escape(item.get("url") or ""))
    _print_table(table)
    if download is not None:
        err.print(f"downloaded {len(listing['downloaded'])} file(s) into {escape(str(download))}")


@job_app.command("metrics")
def job_metrics(
    job_id: str = JobId, url: str = Url, token: str | None = Token, as_json: bool = AsJson
) -> None:
    """Timings, resource use and io of a job."""
    with _connect(url, token) as client:
        metrics = client.metrics(job_id)
    if as_json:
        _print_json(metrics)
    else:
        out.print(metrics_summary(metrics))


@job_app.command("cancel")
def job_cancel(
    job_id: str = JobId, url: str = Url, token: str | None = Token, as_json: bool = AsJson
) -> None:
    """Cancel (dismiss) a job."""
    with _connect(url, token) as client:
        info = client.cancel(job_id)
    if as_json:
        _print_json(info)
    else:
        out.print(f"job {job_id} {_styled(info['status'])} {escape(info.get('message') or '')}")


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
    with _connect(url, token) as client:
        if every:
            jobs = list(client.iter_jobs(page_size=500, **filters))
            matched = len(jobs)
        else:
            page = client.list_jobs(limit=limit, **filters)
            jobs, matched = page["jobs"], page["numberMatched"]
    if as_json:
        _print_json({"jobs": jobs, "numberMatched": matched})
        return
    table = Table(Column("job", no_wrap=True), "process", "status", "queue", "tags", "created")
    for j in jobs:
        table.add_row(
            j["jobID"],
            escape(j.get("processID") or ""),
            _styled(j["status"]),
            j.get("queue") or "",
            escape(",".join(j.get("tags") or [])),
            (j.get("created") or "")[:19],
        )
    _print_table(table)
    err.print(
        f"{len(jobs)} of {matched} job(s)"
        + ("" if every or len(jobs) >= matched else "; --all lists every one")
    )


# -- batches ------------------------------------------------------------------------------


def _batch_done(info: Mapping[str, Any]) -> int:
    counts = info.get("counts") or {}
    return sum(counts.get(s, 0) for s in TERMINAL_STATUSES)


def _counts_text(info: Mapping[str, Any]) -> str:
    counts = info.get("counts") or {}
    return "  ".join(f"{_styled(s)} {n}" for s, n in counts.items() if n)


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
    with _connect(url, token) as client:
        info = client.submit_batch(process_id, rows, queue=queue, tag=tag, priority=priority)
        if not as_json:
            err.print(f"batch {info['batchID']}: {info['total']} job(s) submitted")
        if wait:
            info = {**info, **_wait_batch(client, info["batchID"], timeout, quiet=as_json)}
    if as_json:
        _print_json(info)
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
    with _connect(url, token) as client:
        info = (
            _wait_batch(client, batch_id, timeout, quiet=as_json)
            if wait
            else client.batch_status(batch_id)
        )
    _print_json(info) if as_json else _print_batch(info)
    if wait:
        _batch_exit(info)


@batch_app.command("cancel")
def batch_cancel(
    batch_id: str = BatchId, url: str = Url, token: str | None = Token, as_json: bool = AsJson
) -> None:
    """Cancel every unfinished job of a batch."""
    with _connect(url, token) as client:
        info = client.cancel_batch(batch_id)
    _print_json(info) if as_json else _print_batch(info)


@batch_app.command("retry")
def batch_retry(
    batch_id: str = BatchId, url: str = Url, token: str | None = Token, as_json: bool = AsJson
) -> None:
    """Resubmit a batch's failed and dismissed jobs as a new batch."""
    with _connect(url, token) as client:
        info = client.retry_batch(batch_id)
    if as_json:
        _print_json(info)
    elif not info.get("jobIDs"):
        out.print("nothing to retry")
    else:
        out.print(f"batch {info['batchID']}: {len(info['jobIDs'])} job(s) resubmitted")


# -- queues -------------------------------------------------------------------------------


def _size(n: float | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@app.command("queues")
def queues_command(url: str = Url, token: str | None = Token, as_json: bool = AsJson) -> None:
    """Queues with their limits, depth and activity."""
    with _connect(url, token) as client:
        queues = client.queues()
    if as_json:
        _print_json(queues)
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
            _size(q.get("memory")),
            str(q.get("cpus") or ""),
            f"{q['time_limit']:g} s" if q.get("time_limit") else "",
            str(q.get("slots")),
            str(q.get("depth", 0)),
            str(q.get("running", 0)),
            f"{oldest:.0f} s" if oldest is not None else "",
            str(q.get("workers", "")),
        )
    _print_table(table)


# -- run-local ----------------------------------------------------------------------------


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
        parts.append(f"peak memory {_size(m['peak_memory_bytes'])}")
    localize = m.get("localize") or {}
    if localize.get("files"):
        parts.append(f"inputs {localize['files']} file(s) {_size(localize.get('bytes'))}")
    stage = m.get("stage") or {}
    if stage.get("files"):
        parts.append(f"outputs {stage['files']} file(s) {_size(stage.get('bytes'))}")
    return ", ".join(parts) or "no metrics"


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


@app.command("run-local")
def run_local_command(
    algorithm_file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="The algorithm's registration YAML (or CWL)."
    ),
    inputs: list[str] | None = Inputs,
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        file_okay=False,
        help="Where to copy the outputs (./output-<job id>).",
    ),
    queue: str | None = Queue,
    tag: str | None = Tag,
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="run-local's own store and build cache (~/.opendps/run-local)."
    ),
    rebuild: bool = typer.Option(False, "--rebuild", help="Build again even if unchanged."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Print the job's output live."),
    config: Path | None = ConfigFile,
    as_json: bool = AsJson,
) -> None:
    """Run an algorithm here exactly as a job would run, with no server."""
    from opendps.errors import OpenDPSError
    from opendps.local_run import LocalBuildFailed, run_local

    values = parse_inputs(inputs)

    def progress(message: str) -> None:
        if not as_json:
            err.print(f"[dim]{escape(message)}[/dim]")

    def live(stream: str, text: str) -> None:
        (sys.stdout if stream == "stdout" else sys.stderr).write(text)

    try:
        result = run_local(
            algorithm_file,
            values,
            output_dir=output,
            queue=queue,
            tag=tag,
            data_dir=data_dir,
            config=config,
            rebuild=rebuild,
            on_progress=progress,
            on_log=live if follow and not as_json else None,
        )
    except LocalBuildFailed as exc:
        if exc.log_tail and not as_json:
            err.print("[dim]--- build log (last lines) ---[/dim]\n" + escape(exc.log_tail))
        _fail(exc.message, EXIT_FAILED)
    except OpenDPSError as exc:
        _fail(exc.message, EXIT_USAGE if 400 <= exc.status < 500 else EXIT_FAILED)
    _report_local(result, as_json, show_logs=not follow)
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)


def _report_local(result: Any, as_json: bool, show_logs: bool) -> None:
    job = result.job
    if as_json:
        _print_json(
            {
                "jobID": job.id,
                "processID": job.process_id,
                "status": job.status.value,
                "reason": job.reason.value if job.reason else None,
                "phase": job.phase.value if job.phase else None,
                "message": job.message,
                "output_dir": str(result.output_dir),
                "files": [str(f) for f in result.files],
                "built": result.built,
                "build_seconds": result.build_seconds,
                "build_commit": result.build.commit,
                "metrics": result.metrics,
                "stdout": result.logs.get("stdout", ""),
                "stderr": result.logs.get("stderr", ""),
            }
        )
        return
    for stream in ("stdout", "stderr") if show_logs else ():
        text = result.logs.get(stream, "")
        if text.strip():
            err.print(f"[dim]--- {stream} (last lines) ---[/dim]")
            err.print(escape(_tail(text)))
    why = f" ({job.reason.value} in {job.phase.value})" if job.reason and job.phase else ""
    err.print(f"job {job.id} {_styled(job.status.value)}{why}: {escape(job.message or '')}")
    err.print(f"metrics: {metrics_summary(result.metrics)}")
    err.print(f"outputs: {len(result.files)} file(s) in {escape(str(result.output_dir))}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()

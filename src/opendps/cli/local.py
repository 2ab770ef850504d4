"""``dps run-local``: run one algorithm here, as a job would run, with no server."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.markup import escape

from opendps.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    AsJson,
    ConfigFile,
    Inputs,
    Queue,
    Tag,
    err,
    fail,
    metrics_summary,
    print_json,
    styled,
)
from opendps.cli.inputs import parse_inputs

T = TypeVar("T")


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


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
    from opendps.executors.local_run import run_local

    values = parse_inputs(inputs)

    result = run_reporting(
        lambda **report: run_local(
            algorithm_file,
            values,
            output_dir=output,
            queue=queue,
            tag=tag,
            data_dir=data_dir,
            config=config,
            rebuild=rebuild,
            **report,
        ),
        as_json=as_json,
        follow=follow,
    )
    _report_local(result, as_json, show_logs=not follow)
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)


def run_reporting(run: Callable[..., T], *, as_json: bool, follow: bool) -> T:
    """Run ``run(on_progress=…, on_log=…)`` (run-local, dps test): progress lines on stderr,
    the job's streams live with ``--follow``, a failed build (with its log's tail) and bad
    input as the CLI's exit codes."""
    from opendps.errors import OpenDPSError
    from opendps.executors.local_run import LocalBuildFailed

    def progress(message: str) -> None:
        if not as_json:
            err.print(f"[dim]{escape(message)}[/dim]")

    def live(stream: str, text: str) -> None:
        (sys.stdout if stream == "stdout" else sys.stderr).write(text)

    try:
        return run(on_progress=progress, on_log=live if follow and not as_json else None)
    except LocalBuildFailed as exc:
        if exc.log_tail and not as_json:
            err.print("[dim]--- build log (last lines) ---[/dim]\n" + escape(exc.log_tail))
        fail(exc.message, EXIT_FAILED)
    except OpenDPSError as exc:
        fail(exc.message, EXIT_USAGE if 400 <= exc.status < 500 else EXIT_FAILED)


def _report_local(result: Any, as_json: bool, show_logs: bool) -> None:
    job = result.job
    if as_json:
        print_json(
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
    err.print(f"job {job.id} {styled(job.status.value)}{why}: {escape(job.message or '')}")
    err.print(f"metrics: {metrics_summary(result.metrics)}")
    err.print(f"outputs: {len(result.files)} file(s) in {escape(str(result.output_dir))}")

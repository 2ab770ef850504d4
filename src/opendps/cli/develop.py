"""The algorithm developer's loop: ``dps init``, ``dps test``, ``dps shell`` (DESIGN §15)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from opendps.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    AsJson,
    ConfigFile,
    Inputs,
    Queue,
    err,
    fail,
    out,
    print_json,
    styled,
)
from opendps.cli.local import run_reporting

AlgorithmFile = typer.Argument(
    ..., exists=True, dir_okay=False, help="The algorithm's registration YAML (or CWL)."
)
LocalDataDir = typer.Option(
    None, "--data-dir", help="run-local's own store and build cache (~/.opendps/run-local)."
)


def init_command(
    name: Path = typer.Argument(..., help="The new folder; its name is the algorithm's name."),
) -> None:
    """Write a ready-to-register algorithm folder (a git repository) with a golden pair."""
    from opendps.errors import OpenDPSError
    from opendps.registry.scaffold import init_algorithm

    try:
        folder = init_algorithm(name)
    except OpenDPSError as exc:
        fail(exc.message, EXIT_USAGE)
    out.print(f"created {escape(str(folder))} (a git repository on branch main)")
    out.print(f"next: cd {escape(str(name))} && dps test algorithm.yml --data data")


def test_command(
    algorithm_file: Path = AlgorithmFile,
    data: Path = typer.Option(
        ..., "--data", file_okay=False, exists=True, help="Golden data: input/, output/."
    ),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        file_okay=False,
        help="Where the run's outputs go (DIR/test-output).",
    ),
    queue: str | None = Queue,
    data_dir: Path | None = LocalDataDir,
    rebuild: bool = typer.Option(False, "--rebuild", help="Build again even if unchanged."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Print the job's output live."),
    config: Path | None = ConfigFile,
    as_json: bool = AsJson,
) -> None:
    """Run the algorithm's working tree on DIR/input as a job would; compare with DIR/output."""
    from opendps.executors.golden import run_golden_test

    result = run_reporting(
        lambda **report: run_golden_test(
            algorithm_file,
            data,
            output_dir=output,
            queue=queue,
            data_dir=data_dir,
            config=config,
            rebuild=rebuild,
            **report,
        ),
        as_json=as_json,
        follow=follow,
    )
    if as_json:
        print_json(
            {
                "ok": result.ok,
                "jobID": result.run.job.id,
                "status": result.run.job.status.value,
                "message": result.run.job.message,
                "output_dir": str(result.run.output_dir),
                "files": [
                    {"path": f.path, "status": f.status, "detail": f.detail}
                    for f in result.report.files
                ],
            }
        )
    else:
        _print_report(result)
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)


def _print_report(result: object) -> None:
    run, report = result.run, result.report  # type: ignore[attr-defined]
    job = run.job
    if not run.ok:
        err.print(f"job {job.id} {styled(job.status.value)}: {escape(job.message or '')}")
        stderr = run.logs.get("stderr", "").rstrip("\n").splitlines()[-15:]
        if stderr:
            err.print("[dim]--- stderr (last lines) ---[/dim]\n" + escape("\n".join(stderr)))
    for item in report.files:
        style = "green" if item.status == "match" else "red"
        detail = f": {escape(item.detail)}" if item.detail else ""
        out.print(f"[{style}]{item.status:8}[/{style}] {escape(item.path)}{detail}")
    matched = sum(1 for f in report.files if f.status == "match")
    verdict = "[green]PASS[/green]" if result.ok else "[red]FAIL[/red]"  # type: ignore[attr-defined]
    out.print(
        f"{verdict}: {matched} of {len(report.files)} file(s) match "
        f"(outputs in {escape(str(run.output_dir))})"
    )


def shell_command(
    algorithm_file: Path = AlgorithmFile,
    inputs: list[str] | None = Inputs,
    queue: str | None = Queue,
    data_dir: Path | None = LocalDataDir,
    rebuild: bool = typer.Option(False, "--rebuild", help="Build again even if unchanged."),
    config: Path | None = ConfigFile,
) -> None:
    """A shell in exactly the job's environment (its image or the host), for debugging.

    The shell starts in a fresh work dir with input/ filled and output/ empty, with the run
    contract's variables; the work dir is kept when it exits."""
    from opendps.cli.inputs import parse_inputs
    from opendps.errors import OpenDPSError
    from opendps.executors.local_run import LocalBuildFailed
    from opendps.executors.shell import open_shell

    def progress(message: str) -> None:
        err.print(f"[dim]{escape(message)}[/dim]")

    try:
        session = open_shell(
            algorithm_file,
            parse_inputs(inputs),
            queue=queue,
            data_dir=data_dir,
            config=config,
            rebuild=rebuild,
            on_progress=progress,
        )
    except LocalBuildFailed as exc:
        if exc.log_tail:
            err.print("[dim]--- build log (last lines) ---[/dim]\n" + escape(exc.log_tail))
        fail(exc.message, EXIT_FAILED)
    except OpenDPSError as exc:
        fail(exc.message, EXIT_USAGE if 400 <= exc.status < 500 else EXIT_FAILED)
    err.print(
        f"[dim]shell ({escape(session.where)}) exited {session.exit_code}; the work dir "
        f"{escape(str(session.work_dir))} is kept[/dim]"
    )
    raise typer.Exit(session.exit_code)

"""``dps``: the command line (DESIGN §7)."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import typer

from opendps.settings import Settings

app = typer.Typer(help="opendps: run algorithms from git repositories as jobs on queues.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)

DataDir = typer.Option(None, "--data-dir", envvar="DPS_DATA_DIR",
                       help="Where the database, storage and work dirs live.")
ConfigFile = typer.Option(None, "--config", envvar="DPS_CONFIG", help="YAML settings file.")


def _settings(config: Path | None, **overrides: object) -> Settings:
    try:
        return Settings.load(config, **overrides)
    except Exception as exc:  # pydantic / YAML errors: say what to fix, no traceback
        raise typer.BadParameter(str(exc)) from exc


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


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
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info",
                timeout_graceful_shutdown=5)


@app.command()
def worker(
    queue: list[str] | None = typer.Option(None, "--queue", "-q", help="Queues to serve (default all)."),
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()

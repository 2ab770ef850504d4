"""``dps server`` and ``dps worker``: run opendps itself."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import typer

from opendps.cli.common import ConfigFile, DataDir, load_settings, setup_logging


def server(
    host: str = typer.Option("127.0.0.1", "--host", envvar="DPS_HOST"),
    port: int = typer.Option(8000, "--port", envvar="DPS_PORT"),
    data_dir: Path | None = DataDir,
    config: Path | None = ConfigFile,
) -> None:
    """Start the embedded DPS: API + UI + local executor in one process."""
    import uvicorn

    from opendps.api.app import create_app

    setup_logging()
    settings = load_settings(config, host=host, port=port, data_dir=data_dir)
    typer.echo(f"opendps {settings.base_url}  (data in {settings.data_dir})")
    app = _or_exit(lambda: create_app(settings))
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=5)


def _or_exit(build):  # type: ignore[no-untyped-def]
    """A configuration that cannot work is a clear start-up error, not a traceback."""
    from opendps.errors import OpenDPSError

    try:
        return build()
    except OpenDPSError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2)


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

    setup_logging()
    settings = load_settings(config, data_dir=data_dir)
    services = _or_exit(lambda: Services(settings))
    services.catalog.sync_queues(settings.queues)
    executor = LocalExecutor(services, queues=queue or None)
    _or_exit(executor.start)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    typer.echo(f"worker serving {', '.join(executor.queue_slots)}")
    stop.wait()
    executor.stop()

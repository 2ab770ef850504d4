"""``dps server`` and ``dps worker``: run opendps itself."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import typer

from opendps.cli.common import ConfigFile, DataDir, load_settings, setup_logging
from opendps.settings import Settings


def server(
    host: str | None = typer.Option(
        None, "--host", help="Address to listen on (setting host, env DPS_HOST; 127.0.0.1)."
    ),
    port: int | None = typer.Option(
        None, "--port", help="Port to listen on (setting port, env DPS_PORT; 8000)."
    ),
    data_dir: Path | None = DataDir,
    config: Path | None = ConfigFile,
) -> None:
    """Start the DPS: API + UI, and the local executor (or, with executor: celery, the
    dispatcher that enqueues for `dps worker`s)."""
    import uvicorn

    from opendps.api.app import create_app

    # A flag overrides the file only when given; the file overrides the environment.
    settings = load_settings(config, host=host, port=port, data_dir=data_dir)
    require_shared_key(settings)
    setup_logging(settings)
    mode = "celery: jobs run on `dps worker`s" if settings.executor == "celery" else "local"
    typer.echo(f"opendps {settings.base_url}  (data in {settings.data_dir}; executor {mode})")
    app = _or_exit(lambda: create_app(settings))
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        log_config=None,  # our handlers (text or JSON lines)
        timeout_graceful_shutdown=5,
    )


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
    concurrency: int | None = typer.Option(
        None,
        "--concurrency",
        "-c",
        min=1,
        help="Jobs at once (celery executor; default: the slots of its queues).",
    ),
    data_dir: Path | None = DataDir,
    config: Path | None = ConfigFile,
) -> None:
    """Run jobs: a Celery worker (executor: celery) with its own data dir, or a local
    executor on the shared store (the server may run with DPS_RUN_JOBS=false)."""
    from opendps.errors import NoSuchQueue
    from opendps.service.context import Services

    settings = load_settings(config, data_dir=data_dir)
    require_shared_key(settings)
    setup_logging(settings)
    unknown = [q for q in queue or [] if settings.queue(q) is None]
    if unknown:
        raise typer.BadParameter(
            f"unknown queue(s) {unknown}; configured: {[q.name for q in settings.queues]}",
            param_hint="--queue",
        )
    services = _or_exit(lambda: Services(settings))
    services.catalog.sync_queues(settings.queues)
    if settings.executor == "celery":
        from opendps.executors.celery import CeleryWorker, default_concurrency

        names = queue or [q.name for q in settings.queues]
        celery_worker = CeleryWorker(
            services, names, concurrency or default_concurrency(settings, names)
        )
        typer.echo(
            f"worker {celery_worker.id} serving {', '.join(names)} "
            f"(concurrency {celery_worker.concurrency}, data in {settings.data_dir})"
        )
        celery_worker.run()
        return
    if concurrency is not None:
        raise typer.BadParameter(
            "--concurrency is for executor: celery; a local worker uses the queues' slots",
            param_hint="--concurrency",
        )
    from opendps.executors.local import LocalExecutor

    try:
        executor = LocalExecutor(services, queues=queue or None)
    except NoSuchQueue as exc:
        raise typer.BadParameter(exc.message, param_hint="--queue")
    _or_exit(executor.start)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    typer.echo(f"worker serving {', '.join(executor.queue_slots)}")
    stop.wait()
    executor.stop()


def require_shared_key(settings: Settings) -> None:
    """Scale-out processes have their own data dirs, so a key generated into one of them
    would differ between the server and the workers: job tokens minted by a worker would
    not open the API, nor would secrets stored by the API decrypt on a worker."""
    if settings.executor == "celery" and not settings.secret_key:
        raise typer.BadParameter(
            "executor: celery needs secret_key in the configuration that the server and every "
            "worker share (generate one with: python -c 'from cryptography.fernet import "
            "Fernet; print(Fernet.generate_key().decode())')"
        )

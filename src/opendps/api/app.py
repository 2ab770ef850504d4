"""create_app: the one FastAPI application (DESIGN §6)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI

from opendps import __version__
from opendps.api import batches, jobs, meta, metrics, processes
from opendps.api.bodies import BodyLimit
from opendps.api.deps import signed_in
from opendps.api.problems import install_error_handlers
from opendps.service.context import Services
from opendps.settings import Settings

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    services: Services | None = None,
    run_jobs: bool | None = None,
    supervisors: str = "process",
) -> FastAPI:
    """The API. With ``run_jobs`` (default: settings.run_jobs) the local executor runs in it."""
    services = services or Services(settings or Settings())
    settings = services.settings
    services.catalog.sync_queues(settings.queues)
    executor_wanted = settings.run_jobs if run_jobs is None else run_jobs

    celery = settings.executor == "celery"

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        executor = None
        if celery:
            # Scale-out: this process enqueues, sweeps and builds; `dps worker`s run jobs.
            services.dispatcher.start(run_builds=executor_wanted)
        elif executor_wanted:
            from opendps.executors.local import LocalExecutor

            executor = LocalExecutor(services, supervisors=supervisors)
            executor.start()
        app.state.executor = executor
        try:
            yield
        finally:
            if executor is not None:
                executor.stop()
            if celery:
                services.dispatcher.close()

    app = FastAPI(
        dependencies=[Depends(signed_in)],
        title="opendps",
        version=__version__,
        description="Open Data Processing System: OGC API - Processes, MAAP-compatible.",
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.conformance = list(meta.CONFORMANCE)
    app.state.queue_workers = lambda queue: queue_workers(app, queue)
    app.state.workers_for = lambda queue: len(queue_workers(app, queue))
    install_error_handlers(app)
    app.add_middleware(
        BodyLimit,
        limit=settings.max_request_bytes,
        batch_limit=settings.max_batch_request_bytes,
    )
    for router in (meta.router, metrics.router, processes.router, jobs.router, batches.router):
        app.include_router(router)
    _install_dialects(app)
    return app


def queue_workers(app: FastAPI, queue: str) -> list[dict[str, object]]:
    """The workers serving ``queue``: every executor whose heartbeat is fresher than
    ``heartbeat_timeout`` (celery ``dps worker``s, local ``dps worker``s, the embedded
    server's own executor)."""
    from datetime import UTC, datetime, timedelta

    services: Services = app.state.services
    alive_since = datetime.now(UTC) - timedelta(seconds=services.settings.heartbeat_timeout)
    return [
        {
            "id": w.id,
            "host": w.host,
            "concurrency": w.concurrency,
            "running": len(w.running),
            "last_seen": w.last_seen.isoformat(),
        }
        for w in services.worker_store.list_workers()
        if queue in w.queues and w.last_seen >= alive_since
    ]


def _install_dialects(app: FastAPI) -> None:
    """Built-in processes, the OGC execution/results layer, the MAAP dialect and the UI.
    Order matters: OGC's execute route and MAAP's error shape for /api/ hook into the app."""
    from opendps.api import builtins, maap, ogc, ui

    for module in (builtins, maap, ogc, ui):
        module.install(app)

"""Landing page, conformance, queues, health."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse

from opendps import __version__
from opendps.api.deps import base_url, services_of

router = APIRouter(tags=["service"])

# What is implemented (docs/ogc.md). The CWL and OGC Application Package classes of
# Part 2 are added by opendps.api.ogc when cwltool is installed.
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/ogc-process-description",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/json",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/job-list",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/dismiss",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/callback",
    "http://www.opengis.net/spec/ogcapi-processes-2/1.0/conf/deploy-replace-undeploy",
]


@router.get("/", summary="Landing page")
def landing(request: Request) -> Any:
    accept = request.headers.get("accept", "")
    if "text/html" in accept and "json" not in accept and request.query_params.get("f") != "json":
        return RedirectResponse("/ui/", status_code=303)
    base = base_url(request)
    return {
        "title": "opendps",
        "description": "An open-source Data Processing System (OGC API - Processes)",
        "version": __version__,
        "links": [
            {
                "href": f"{base}/",
                "rel": "self",
                "type": "application/json",
                "title": "this document",
            },
            {
                "href": f"{base}/openapi.json",
                "rel": "service-desc",
                "type": "application/vnd.oai.openapi+json;version=3.0",
                "title": "the API definition",
            },
            {
                "href": f"{base}/docs",
                "rel": "service-doc",
                "type": "text/html",
                "title": "the API documentation",
            },
            {
                "href": f"{base}/conformance",
                "rel": "http://www.opengis.net/def/rel/ogc/1.0/conformance",
                "type": "application/json",
                "title": "conformance classes",
            },
            {
                "href": f"{base}/processes",
                "rel": "http://www.opengis.net/def/rel/ogc/1.0/processes",
                "type": "application/json",
                "title": "processes",
            },
            {
                "href": f"{base}/jobs",
                "rel": "http://www.opengis.net/def/rel/ogc/1.0/job-list",
                "type": "application/json",
                "title": "jobs",
            },
            {"href": f"{base}/queues", "rel": "queues", "type": "application/json"},
            {"href": f"{base}/ui/", "rel": "alternate", "type": "text/html", "title": "web UI"},
        ],
    }


@router.get("/conformance", summary="Conformance classes implemented")
def conformance(request: Request) -> dict[str, Any]:
    return {"conformsTo": request.app.state.conformance}


@router.get("/queues", summary="Queues with limits, depth and activity")
def list_queues(request: Request) -> dict[str, Any]:
    services = services_of(request)
    stats = services.job_store.queue_stats()
    now = datetime.now(UTC)
    queues = []
    for queue in services.settings.queues:
        entry = stats.get(queue.name, {})
        oldest = entry.get("oldest_accepted")
        workers = request.app.state.queue_workers(queue.name)
        depth = entry.get("accepted", 0)
        queues.append(
            {
                "name": queue.name,
                "memory": queue.memory,
                "cpus": queue.cpus,
                "time_limit": queue.time_limit,
                "slots": queue.slots,
                "guest": queue.guest,
                "default": queue.name == services.settings.default_queue,
                "depth": depth,
                "running": entry.get("running", 0),
                "oldest_waiting_seconds": (now - oldest).total_seconds() if oldest else None,
                "workers": workers,
                # Jobs wait here and nothing will run them until a worker serves the queue.
                "unserved": bool(depth and not workers),
                "warning": (
                    f"{depth} job(s) wait on {queue.name} and no worker serves it"
                    if depth and not workers
                    else None
                ),
            }
        )
    return {"queues": queues}


@router.get("/healthz", summary="Liveness")
def healthz(request: Request) -> dict[str, Any]:
    services = services_of(request)
    with services.db.read() as conn:
        conn.exec_driver_sql("SELECT 1")
    return {"status": "ok", "version": __version__}

"""maap-py 4.x algorithms (``/api/mas/algorithm…``) and the queues of both versions."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from opendps.api.deps import base_url, current_user, services_of
from opendps.api.maap import legacy, xml
from opendps.api.maap.common import queues_for
from opendps.api.maap.processes import register
from opendps.api.maap.registration import legacy_mapping
from opendps.registry.spec import parse_registration
from opendps.service.packages import Package
from opendps.service.queries import ProcessQuery

router = APIRouter(include_in_schema=False)


@router.get("/api/mas/algorithm/resource")
def queues(request: Request) -> dict[str, Any]:
    """``get_queues()`` / ``getQueues()``: the queue names this user may submit to."""
    services = services_of(request)
    user = current_user(request)
    return {"code": 200, "queues": queues_for(services, user), "message": "success"}


@router.post("/api/mas/algorithm")
async def register_algorithm(request: Request) -> dict[str, Any]:
    """The 4.x ``registerAlgorithm`` / ``register_algorithm_from_yaml_file`` body. An
    existing name+version is replaced, as on MAAP (DESIGN §9 "Registering again")."""
    services = services_of(request)
    user = current_user(request)
    content_type = (request.headers.get("content-type") or "").lower()
    form = None
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = dict(await request.form())
    raw = await request.body() if form is None else b""
    data = legacy_mapping(raw, form, services.settings)
    spec = parse_registration(data)
    package = Package(spec, raw.decode(errors="replace") if raw else str(data), "application/json")
    algorithm = register(services, package, user, replace=True)
    base = base_url(request)
    build = algorithm.build
    log = f"{base}/processes/{quote(algorithm.process_id)}/build/log"
    return {
        "code": 200,
        "message": {
            "id": build.id if build else None,
            "title": f"Registering algorithm {algorithm.process_id}",
            "algorithm": algorithm.process_id,
            "processID": algorithm.id,
            "job_type": f"job-{algorithm.process_id}",
            "status": build.status.value if build else "ready",
            "job_web_url": f"{base}/api/ogc/deploymentJobs/{build.id if build else ''}",
            "job_log_url": log,
        },
    }


@router.get("/api/mas/algorithm")
def list_algorithms(request: Request) -> dict[str, Any]:
    services = services_of(request)
    query = ProcessQuery(limit=10000)
    algorithms = services.algorithms.list_processes(query, current_user(request)).items
    return {
        "code": 200,
        "algorithms": [{"type": a.name, "version": a.version} for a in algorithms],
        "message": "success",
    }


@router.get("/api/mas/algorithm/{algo_id}")
def describe_algorithm(algo_id: str, request: Request) -> Response:
    services = services_of(request)
    algorithm = services.algorithms.get(algo_id.removeprefix("job-"))
    return Response(
        xml.process_offerings([legacy.wps_process(algorithm)]), media_type="application/xml"
    )


@router.delete("/api/mas/algorithm/{algo_id}")
def delete_algorithm(algo_id: str, request: Request) -> dict[str, Any]:
    services = services_of(request)
    user = current_user(request)
    algorithm = services.algorithms.delete(algo_id.removeprefix("job-"), user)
    return {"code": 200, "message": f"successfully deleted job-{algorithm.process_id}"}


@router.post("/api/mas/publish")
async def publish_algorithm(request: Request) -> dict[str, Any]:
    """4.x ``publishAlgorithm``: every registered algorithm is already visible here."""
    current_user(request)
    return {
        "code": 200,
        "success": True,
        "message": "nothing to do: registered algorithms are visible to every user",
    }

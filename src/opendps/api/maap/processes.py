"""maap-py 5.x algorithms: ``/api/ogc/processes…`` and ``/api/ogc/deploymentJobs/{id}``."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from opendps.api.deps import base_url, current_user, services_of
from opendps.api.maap import documents
from opendps.api.maap.common import (
    MaapError,
    check_queue,
    decode_json_body,
    find_algorithm,
    parse_bool,
    queue_name,
)
from opendps.api.maap.errors import ogc_error
from opendps.api.maap.registration import check_registration_queue, package_from_ogc_body
from opendps.api.ogc.inputs import decode_value
from opendps.errors import DuplicateProcess, NoSuchProcess
from opendps.models import Algorithm
from opendps.net.urls import redact
from opendps.registry.spec import AlgorithmSpec
from opendps.service.context import Services
from opendps.service.jobs import Submission
from opendps.service.packages import Package
from opendps.service.queries import ProcessQuery

router = APIRouter(include_in_schema=False)


def queue_alias(services: Services, spec: AlgorithmSpec) -> AlgorithmSpec:
    """A YAML's ``queue: maap-dps-worker-8gb`` names our ``dps-worker-8gb``."""
    if spec.queue and services.settings.queue(spec.queue) is None:
        bare = spec.queue.removeprefix("maap-")
        if services.settings.queue(bare) is not None:
            return spec.model_copy(update={"queue": bare})
    return spec


def register(services: Services, package: Package, user: str, *, replace: bool) -> Algorithm:
    spec = queue_alias(services, package.spec)
    check_registration_queue(services, spec, user)
    return services.algorithms.register(
        spec, owner=user, package=package.body, package_type=package.media_type, replace=replace
    )


@router.get("/api/ogc/processes")
def list_processes(request: Request) -> dict[str, Any]:
    """Filters as maap-api-nasa: ``deployer``, ``algorithmName``, ``algorithmVersion``."""
    services = services_of(request)
    params = request.query_params
    base = base_url(request)
    query = ProcessQuery(
        name=params.get("algorithmName") or None,
        version=params.get("algorithmVersion") or None,
        owner=params.get("deployer") or None,
        limit=10000,
    )
    page = services.algorithms.list_processes(query, current_user(request))
    processes = [documents.process_summary(a, base) for a in page.items]
    return {
        "processes": processes,
        "numberMatched": len(processes),
        "links": [
            {
                "href": f"{base}/api/ogc/processes",
                "rel": "self",
                "type": "application/json",
                "hreflang": "en",
                "title": "Processes",
            }
        ],
    }


@router.post("/api/ogc/processes")
async def deploy_process(request: Request) -> JSONResponse:
    services = services_of(request)
    user = current_user(request)
    package = package_from_ogc_body(
        await request.body(), request.headers.get("content-type"), services.settings
    )
    base = base_url(request)
    try:
        algorithm = register(services, package, user, replace=False)
    except DuplicateProcess:
        existing = services.algorithms.get(package.spec.process_id)
        return ogc_error(
            request.url.path,
            409,
            f"Duplicate process: {existing.process_id} is already deployed as processID "
            f"{existing.id}; use PUT /api/ogc/processes/{existing.id} (update_algorithm) to "
            "replace it",
            additionalProperties={"processID": existing.id},
        )
    return JSONResponse(
        documents.deploy_answer(algorithm, base),
        status_code=202,
        headers={
            "Location": f"{base}/api/ogc/deploymentJobs/"
            f"{algorithm.build.id if algorithm.build else ''}"
        },
    )


@router.get("/api/ogc/processes/{process_id}")
def describe_process(process_id: str, request: Request) -> dict[str, Any]:
    services = services_of(request)
    return documents.process_description(find_algorithm(services, process_id), base_url(request))


@router.put("/api/ogc/processes/{process_id}")
async def replace_process(process_id: str, request: Request) -> JSONResponse:
    services = services_of(request)
    user = current_user(request)
    current = find_algorithm(services, process_id)
    services.algorithms.editable(current.process_id, user)
    package = package_from_ogc_body(
        await request.body(), request.headers.get("content-type"), services.settings
    )
    if (package.spec.name, package.spec.version) != (current.name, current.version):
        raise MaapError(
            400,
            f"the package describes {package.spec.process_id}, but process "
            f"{process_id} is {current.process_id}; id and version must match",
        )
    algorithm = register(services, package, user, replace=True)
    base = base_url(request)
    answer = documents.deploy_answer(algorithm, base)
    return JSONResponse(answer, status_code=202)


@router.delete("/api/ogc/processes/{process_id}")
def delete_process(process_id: str, request: Request) -> dict[str, Any]:
    services = services_of(request)
    user = current_user(request)
    algorithm = services.algorithms.delete(find_algorithm(services, process_id).process_id, user)
    return {
        "detail": "Deleted process",
        "processID": algorithm.id,
        "process_name": algorithm.process_id,
    }


@router.get("/api/ogc/processes/{process_id}/package")
def process_package(process_id: str, request: Request) -> dict[str, Any]:
    services = services_of(request)
    algorithm = find_algorithm(services, process_id)
    spec = AlgorithmSpec.model_validate(algorithm.spec)
    base = base_url(request)
    return {
        "processDescription": spec.description,
        "executionUnit": {
            "href": f"{base}/processes/{quote(algorithm.process_id)}/package",
            "rel": "monitor-desc",
            "type": algorithm.package_type or "application/json",
            "hreflang": "en",
            "title": "Process package",
        },
        "package": redact(algorithm.package),
    }


@router.get("/api/ogc/deploymentJobs/{deployment_id}")
def deployment_status(deployment_id: str, request: Request) -> dict[str, Any]:
    services = services_of(request)
    if not deployment_id.isdigit():
        raise MaapError(404, f"No deployment job with id {deployment_id!r}")
    try:
        build = services.algorithms.get_build(int(deployment_id))
    except NoSuchProcess:
        raise MaapError(404, f"No deployment job with id {deployment_id}") from None
    try:
        algorithm = services.algorithms.get_by_id(build.algorithm_id)
    except NoSuchProcess:
        algorithm = None
    return documents.deployment_status(build, algorithm, base_url(request))


@router.post("/api/ogc/processes/{process_id}/execution")
async def execute(process_id: str, request: Request) -> JSONResponse:
    """maap-py's ``submit_job``: ``{"inputs", "queue", "dedup", "tag"}`` -> 202."""
    services = services_of(request)
    user = current_user(request)
    body = decode_json_body(await request.body(), "execute request")
    if not isinstance(body, dict):
        raise MaapError(400, "the execute request must be a JSON object with 'inputs'")
    algorithm = find_algorithm(services, process_id)
    inputs = decode_inputs(body.get("inputs"))
    queue = queue_name(services, body.get("queue"), user)
    check_queue(services, queue, user)
    tag = body.get("tag")
    tags = [t.strip() for t in str(tag).split(",") if t.strip()] if tag else []
    priority = body.get("priority", 5)
    job = services.jobs.submit(
        Submission(
            process_id=algorithm.process_id,
            inputs=inputs,
            queue=queue,
            priority=priority,
            tags=tags,
            dedup=parse_bool(body.get("dedup"), "dedup"),
        ),
        owner=user,
    )
    base = base_url(request)
    return JSONResponse(
        documents.submitted(job, base),
        status_code=202,
        headers={"Location": f"{base}/api/ogc/jobs/{job.id}"},
    )


def decode_inputs(inputs: Any) -> dict[str, Any]:
    """maap-py passes ``inputs`` through as given: a mapping of plain values (OGC's
    ``{"href": …}`` / ``{"value": …}`` are unwrapped), or a list of ``{id, data|value|href}``."""
    if inputs is None:
        return {}
    if isinstance(inputs, list):
        mapping = {}
        for item in inputs:
            if not isinstance(item, dict) or "id" not in item:
                raise MaapError(400, 'a list of inputs must hold {"id": …, "data": …} objects')
            mapping[str(item["id"])] = item.get("data", item.get("value", item.get("href")))
        inputs = mapping
    if not isinstance(inputs, dict):
        raise MaapError(400, "'inputs' must be an object mapping input names to values")
    return {str(k): decode_value(v, str(k)) for k, v in inputs.items()}

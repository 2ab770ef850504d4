"""/processes: list, describe, register, replace, undeploy, package (execution: api/ogc)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse

from opendps.api.deps import base_url, current_user, page_links, services_of
from opendps.api.documents import process_description, process_summary
from opendps.errors import InvalidInput, UnsupportedMediaType
from opendps.net.urls import redact
from opendps.service.packages import (
    CWL_TYPES,
    JSON_TYPES,
    YAML_TYPES,
    media_type_of,
    parse_package,
)
from opendps.service.queries import ProcessQuery

router = APIRouter(tags=["processes"])


@router.get("/processes", summary="List processes")
def list_processes(
    request: Request,
    limit: int = Query(100, ge=1, le=10000),
    next: str | None = Query(None),
    user: str = Depends(current_user),
) -> dict[str, Any]:
    services = services_of(request)
    page = services.algorithms.list_processes(ProcessQuery(limit=limit, cursor=next), user)
    base = base_url(request)
    links = page_links(request, "/processes", page.next_cursor)
    return {
        "processes": [process_summary(a, base) for a in page.items],
        "numberMatched": page.number_matched,
        "links": links,
    }


@router.get("/processes/{process_id}", summary="Describe a process")
def describe_process(process_id: str, request: Request) -> dict[str, Any]:
    algorithm = services_of(request).algorithms.get(process_id)
    return process_description(algorithm, base_url(request))


def check_media_type(content_type: str | None) -> str:
    """The registration's media type, or 415 before anything else is looked at (Part 2)."""
    media = media_type_of(content_type) or "application/yaml"
    if media in YAML_TYPES | JSON_TYPES | CWL_TYPES or media.endswith("+yaml"):
        return media
    raise UnsupportedMediaType(
        f"cannot register from {media}; send application/yaml or application/json (MAAP "
        f"algorithm), or {', '.join(sorted(CWL_TYPES))} (CWL application package)"
    )


async def _register(
    request: Request, *, replace: bool, process_id: str | None = None, workflow: str | None = None
) -> tuple[Any, Any]:
    """Register (``process_id`` None) or replace ``process_id``; who may is the service's
    decision (owner or admin), checked before the body is parsed and again as it is saved."""
    services = services_of(request)
    user = current_user(request)
    content_type = request.headers.get("content-type")
    check_media_type(content_type)
    current = None
    if process_id is not None:
        current = await run_in_threadpool(services.algorithms.editable, process_id, user)
    body = await request.body()
    if not body.strip():
        raise InvalidInput("the request body is empty; send the algorithm registration")
    package = await run_in_threadpool(
        lambda: parse_package(body, content_type, workflow=workflow, settings=services.settings)
    )
    if current is not None:
        return await run_in_threadpool(
            lambda: services.algorithms.replace(
                current,
                package.spec,
                user=user,
                package=package.body,
                package_type=package.media_type,
            )
        ), package
    algorithm = await run_in_threadpool(
        lambda: services.algorithms.register(
            package.spec,
            owner=user,
            package=package.body,
            package_type=package.media_type,
            replace=replace,
        )
    )
    return algorithm, package


@router.post("/processes", status_code=201, summary="Register (deploy) a process")
async def deploy_process(request: Request, w: str | None = Query(None)) -> JSONResponse:
    algorithm, _ = await _register(request, replace=False, workflow=w)
    base = base_url(request)
    return JSONResponse(
        {"processSummary": process_summary(algorithm, base), **process_summary(algorithm, base)},
        status_code=201,
        headers={"Location": f"{base}/processes/{algorithm.process_id}"},
    )


@router.put("/processes/{process_id}", summary="Replace a process")
async def replace_process(
    process_id: str, request: Request, w: str | None = Query(None)
) -> Response:
    """204 for the application package media types (OGC Part 2: application/cwl*,
    application/ogcapppkg+json); 200 with the summary, whose build state matters, for
    application/yaml and application/json (what `dps algorithm register` sends).
    ``Prefer: return=minimal|representation`` chooses."""
    algorithm, _ = await _register(request, replace=True, process_id=process_id, workflow=w)
    prefer = request.headers.get("prefer", "")
    package_type = media_type_of(request.headers.get("content-type")) in CWL_TYPES
    minimal = "return=minimal" in prefer or ("return=representation" not in prefer and package_type)
    if minimal:
        return Response(status_code=204)
    return JSONResponse(process_summary(algorithm, base_url(request)))


@router.delete("/processes/{process_id}", status_code=204, summary="Undeploy a process")
def undeploy_process(
    process_id: str, request: Request, user: str = Depends(current_user)
) -> Response:
    services_of(request).algorithms.delete(process_id, user)
    return Response(status_code=204)


@router.get("/processes/{process_id}/package", summary="The registration as deployed")
def process_package(process_id: str, request: Request) -> Response:
    algorithm = services_of(request).algorithms.get(process_id)
    if algorithm.package is None:
        spec = dict(algorithm.spec)
        spec["repository_url"] = redact(spec.get("repository_url"))
        return JSONResponse(spec)
    # Credentials in a repository_url (https://user:token@…) are never shown back.
    return Response(
        redact(algorithm.package), media_type=algorithm.package_type or "application/yaml"
    )


@router.get(
    "/processes/{process_id}/build/log", summary="The build log", response_class=PlainTextResponse
)
def build_log(process_id: str, request: Request) -> str:
    return services_of(request).algorithms.build_log(process_id)

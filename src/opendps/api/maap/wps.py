"""maap-py 4.x jobs: the WPS XML routes under ``/api/dps/job`` (reference §6)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from opendps.api.deps import base_url, current_user, services_of
from opendps.api.maap import documents, legacy, xml
from opendps.api.maap.common import (
    check_queue,
    parse_bool,
    parse_int,
    parse_status_filter,
    queue_name,
)
from opendps.api.maap.jobs import MAX_OFFSET, cancel, wait_flag
from opendps.errors import NoSuchJob
from opendps.models import JobStatus
from opendps.service.algorithms import split_process_id
from opendps.service.jobs import Submission
from opendps.service.queries import JobQuery, ProcessQuery, parse_instant
from opendps.service.statuses import WPS

router = APIRouter(include_in_schema=False)
XML = "application/xml"
#: Execute inputs that are submission settings, not algorithm inputs.
RESERVED_INPUTS = ("identifier", "queue", "dedup", "username", "priority")


def _xml(body: str, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type=XML)


@router.get("/api/dps/job")
def capabilities(request: Request) -> Response:
    services = services_of(request)
    query = ProcessQuery(limit=10000)
    algorithms = services.algorithms.list_processes(query, current_user(request)).items
    return _xml(xml.capabilities(legacy.wps_process(a) for a in algorithms))


@router.post("/api/dps/job")
async def execute(request: Request) -> Response:
    """WPS Execute -> 200 ``wps:StatusInfo`` whose first child is the job id."""
    services = services_of(request)
    user = current_user(request)
    execute = xml.parse_execute(await request.body())
    identifier = execute.identifier.removeprefix("job-")
    name, version = split_process_id(identifier)
    algorithm = services.algorithms.get(f"{name}:{version}" if version else name)
    inputs = dict(execute.inputs)
    settings = {key: inputs.pop(key, None) for key in RESERVED_INPUTS}
    tag = settings["identifier"]
    tags = [t.strip() for t in str(tag).split(",") if t.strip()] if tag else []
    queue = queue_name(services, settings["queue"] or None, user)
    check_queue(services, queue, user)
    priority = parse_int(settings["priority"], "priority", low=0, high=9)
    job = services.jobs.submit(
        Submission(
            process_id=algorithm.process_id,
            inputs=inputs,
            queue=queue,
            priority=5 if priority is None else priority,
            tags=tags,
            dedup=parse_bool(settings["dedup"], "dedup"),
        ),
        owner=user,
    )
    return _xml(xml.status_info(job.id, WPS[job.status]))


@router.get("/api/dps/job/describeprocess/{algo_id}")
def describe_process(algo_id: str, request: Request) -> Response:
    services = services_of(request)
    algorithm = services.algorithms.get(algo_id.removeprefix("job-"))
    return _xml(xml.process_offerings([legacy.wps_process(algorithm)]))


@router.get("/api/dps/job/list")
def list_jobs(request: Request) -> dict[str, Any]:
    return _legacy_list(request, None)


@router.get("/api/dps/job/{username}/list")
def list_jobs_of(username: str, request: Request) -> dict[str, Any]:
    """Deprecated in maap-api-nasa; the user must be the caller."""
    return _legacy_list(request, username)


def _legacy_list(request: Request, username: str | None) -> dict[str, Any]:
    """Another user's name shows what the caller may see of their jobs: everything for an
    admin, nothing for anyone else (as for a user who has no jobs)."""
    services = services_of(request)
    user = current_user(request)
    params = request.query_params
    username = username or params.get("username") or None
    statuses, matchable = parse_status_filter(params.get("status"))
    job_type = params.get("job_type")
    query = JobQuery(
        owner=username,
        statuses=statuses,
        process_ids=(job_type,) if job_type else (),
        queue=params.get("queue") or None,
        tag=params.get("tag") or None,
        priority=parse_int(params.get("priority"), "priority", low=0, high=9),
        created_after=parse_instant(params.get("start_time"), "start_time"),
        finished_after=parse_instant(params.get("end_time"), "end_time"),
        matches_nothing=not matchable,
        limit=parse_int(params.get("page_size"), "page_size", low=1, high=10000) or 100,
        offset=parse_int(params.get("offset"), "offset", low=0, high=MAX_OFFSET) or 0,
    )
    details = parse_bool(params.get("get_job_details"), "get_job_details", default=True)
    page = services.jobs.list_jobs(query, user)
    base = base_url(request)
    jobs = [legacy.legacy_job(services, job, base, user, details) for job in page.items]
    return {"status": 200, "jobs": jobs, "numberMatched": page.number_matched}


@router.get("/api/dps/job/{job_id}/status")
def job_status(job_id: str, request: Request) -> Response:
    """An unknown id (or another user's) is ``Deleted``, as maap-api-nasa answers, so that
    4.x ``wait_for_completion`` stops instead of polling for two days."""
    services = services_of(request)
    user = current_user(request)
    try:
        job = services.jobs.get(job_id, user)
    except NoSuchJob:
        return _xml(xml.status_info(job_id, "Deleted", f"No job with id {job_id} exists"), 404)
    return _xml(xml.status_info(job.id, WPS[job.status], job.message))


@router.get("/api/dps/job/{job_id}/metrics")
def job_metrics(job_id: str, request: Request) -> Response:
    services = services_of(request)
    job = services.jobs.get(job_id, current_user(request))
    return _xml(xml.metrics(legacy.legacy_metrics(job)))


@router.get("/api/dps/job/{job_id}")
def job_result(job_id: str, request: Request) -> Response:
    """``wps:Result``: the staged folder as one ``wps:Output`` (folder URL, listing URL,
    then one URL per file); a failed job adds ``wps:Output id="traceback"``."""
    services = services_of(request)
    user = current_user(request)
    job = services.jobs.get(job_id, user)
    outputs: list[tuple[str, list[str]]] = []
    if job.status.terminal and job.started is not None:
        links = documents.staged_links(services, job, base_url(request), user)
        outputs.append((f"output-{documents.iso(job.created)}", [link["href"] for link in links]))
    if job.status == JobStatus.FAILED:
        outputs.append(("traceback", [job.message or "the job failed"]))
    return _xml(xml.result(job.id, outputs))


@router.post("/api/dps/job/cancel/{job_id}")
def cancel_job(job_id: str, request: Request) -> Response:
    services = services_of(request)
    user = current_user(request)
    job = cancel(services, job_id, user, wait_flag(request))
    status = WPS[job.status] if job.status.terminal else "Dismissed"
    return _xml(xml.status_info(job.id, status), 202)

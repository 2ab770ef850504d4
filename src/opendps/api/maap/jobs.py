"""maap-py 5.x jobs: ``/api/ogc/jobs…`` (status, results, metrics, cancel, list)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from opendps.api.deps import base_url, current_user, services_of
from opendps.api.maap import documents
from opendps.api.maap.common import (
    MaapError,
    parse_bool,
    parse_float,
    parse_int,
    parse_status_filter,
)
from opendps.models import Job
from opendps.service.context import Services
from opendps.service.queries import JobQuery, parse_interval
from opendps.service.statuses import HYSDS

router = APIRouter(include_in_schema=False)

#: maap-api-nasa's page size when neither ``limit`` nor ``pageSize`` is given.
DEFAULT_PAGE = 100
MAX_PAGE = 10000
MAX_OFFSET = 2**62  # the databases' integers are 64-bit: beyond that, a 500 from the driver


def selected_fields(value: str | None) -> list[str]:
    if not value:
        return []
    fields = [f.strip() for f in value.split(",") if f.strip()]
    unknown = [f for f in fields if f not in documents.DETAIL_FIELDS]
    if unknown:
        raise MaapError(
            400,
            f"Unknown field(s) {', '.join(unknown)}; choose from "
            f"{', '.join(documents.DETAIL_FIELDS)}",
        )
    return fields


def render_job(job: Job, base: str, details: bool, fields: list[str]) -> dict[str, Any]:
    doc = documents.job_minimal(job)
    if details or fields:
        extra = documents.job_details(job, base)
        doc.update({k: extra[k] for k in fields} if fields and not details else extra)
    return doc


def wait_flag(request: Request) -> bool:
    """maap-py sends ``wait_for_completion``; maap-api-nasa reads ``waitForCompletion``."""
    params = request.query_params
    value = params.get("wait_for_completion", params.get("waitForCompletion"))
    return parse_bool(value, "wait_for_completion")


def cancel(services: Services, job_id: str, user: str, wait: bool) -> Job:
    """Cancel as maap-api-nasa allows it: only queued or running jobs."""
    job = services.jobs.get(job_id, user)
    if job.status.terminal:
        raise MaapError(
            400, f"Not allowed to cancel job with status {HYSDS[job.status]} ({job.status.value})"
        )
    job = services.jobs.cancel(job_id, user)
    if wait:
        job = services.jobs.wait(job_id, user, services.settings.kill_grace + 60)
        if not job.status.terminal:
            raise MaapError(
                500, f"job {job_id} did not stop in time; it is still {job.status.value}"
            )
    return job


@router.get("/api/ogc/jobs")
def list_jobs(request: Request) -> dict[str, Any]:
    services = services_of(request)
    user = current_user(request)
    params = request.query_params
    limit = parse_int(params.get("limit"), "limit", low=1, high=MAX_PAGE)
    if limit is None:
        limit = parse_int(params.get("pageSize"), "pageSize", low=1, high=MAX_PAGE)
    limit = limit or DEFAULT_PAGE
    offset = parse_int(params.get("offset"), "offset", low=0, high=MAX_OFFSET) or 0
    details = parse_bool(params.get("getJobDetails"), "getJobDetails")
    fields = selected_fields(params.get("fields"))
    query = job_query(params, limit=limit, offset=offset)
    base = base_url(request)
    page = services.jobs.list_jobs(query, user)
    jobs = []
    for job in page.items:
        doc = render_job(job, base, details, fields)
        doc["job_type"] = documents.job_type(job)
        doc.setdefault("tags", job.tags)
        jobs.append(doc)
    links = [_page_link(base, params, offset, "self")]
    if offset + len(page.items) < page.number_matched:
        links.append(_page_link(base, params, offset + limit, "next"))
    if offset > 0:
        links.append(_page_link(base, params, max(0, offset - limit), "prev"))
    return {
        "status": 200,
        "jobs": jobs,
        "numberMatched": page.number_matched,
        "numberReturned": len(jobs),
        "links": links,
    }


def job_query(params: Any, *, limit: int, offset: int) -> JobQuery:
    """Every filter maap-py 5.x sends -> the one job query."""
    statuses, matchable = parse_status_filter(params.get("status"))
    after, before = parse_interval(params.get("datetime"))
    process = params.get("processID")
    job_type = params.get("type")
    if job_type and job_type.strip().lower() not in ("process", "dps", "job"):
        matchable = False  # every job here is a process job
    return JobQuery(
        process_ids=(process,) if process else (),
        statuses=statuses,
        queue=params.get("queue") or None,
        tag=params.get("tag") or None,
        priority=parse_int(params.get("priority"), "priority", low=0, high=9),
        created_after=after,
        created_before=before,
        min_duration=parse_float(params.get("minDuration"), "minDuration"),
        max_duration=parse_float(params.get("maxDuration"), "maxDuration"),
        matches_nothing=not matchable,
        limit=limit,
        offset=offset,
    )


def _page_link(base: str, params: Any, offset: int, rel: str) -> dict[str, str]:
    query = [(k, v) for k, v in params.multi_items() if k != "offset"] + [("offset", str(offset))]
    return {
        "href": f"{base}/api/ogc/jobs?{urlencode(query)}",
        "rel": rel,
        "type": "application/json",
        "hreflang": "en",
        "title": f"Jobs ({rel})",
    }


@router.get("/api/ogc/jobs/{job_id}")
def job_status(job_id: str, request: Request) -> dict[str, Any]:
    services = services_of(request)
    user = current_user(request)
    job = services.jobs.get(job_id, user)
    params = request.query_params
    details = parse_bool(params.get("getJobDetails"), "getJobDetails")
    fields = selected_fields(params.get("fields"))
    doc = render_job(job, base_url(request), details, fields)
    if job.message and "message" not in doc:
        doc["message"] = job.message
    return doc


@router.delete("/api/ogc/jobs/{job_id}")
def cancel_job(job_id: str, request: Request) -> JSONResponse:
    services = services_of(request)
    user = current_user(request)
    job = cancel(services, job_id, user, wait_flag(request))
    body = {
        "jobID": job.id,
        "type": "process",
        "status": "dismissed",
        "current_status": job.status.value,
    }
    if not job.status.terminal:
        body["message"] = "cancel requested; the job is being stopped"
    return JSONResponse(body, status_code=202)


@router.get("/api/ogc/jobs/{job_id}/results")
def job_results(job_id: str, request: Request) -> dict[str, Any]:
    services = services_of(request)
    user = current_user(request)
    job = services.jobs.get(job_id, user)
    return documents.results(services, job, base_url(request), user)


@router.get("/api/ogc/jobs/{job_id}/metrics")
def job_metrics(job_id: str, request: Request) -> dict[str, Any]:
    services = services_of(request)
    user = current_user(request)
    return documents.metrics(services.jobs.get(job_id, user))

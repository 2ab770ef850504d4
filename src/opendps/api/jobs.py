"""/jobs: list, status, dismiss, results, outputs, logs, metrics, events."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from opendps.api.deps import base_url, current_user, page_links, services_of
from opendps.api.documents import iso, status_info
from opendps.models import JobStatus
from opendps.service.queries import JobQuery, parse_interval
from opendps.service.statuses import parse_statuses

router = APIRouter(tags=["jobs"])
MAX_WAIT = 600.0  # seconds a status request may wait for the job to end


def job_query(
    request: Request,
    processID: list[str] | None = Query(None, description="name or name:version; repeatable"),
    status: list[str] | None = Query(None, description="accepted, running, successful, …"),
    queue: str | None = Query(None),
    tag: str | None = Query(None),
    batch: str | None = Query(None),
    datetime: str | None = Query(None, description="RFC 3339 instant or interval"),
    minDuration: float | None = Query(None, ge=0),
    maxDuration: float | None = Query(None, ge=0),
    type: list[str] | None = Query(None),
    limit: int = Query(10, ge=1, le=10000),
    next: str | None = Query(None),
) -> JobQuery:
    """OGC ``/jobs`` parameters -> the one job query (scope is the service's business)."""
    after, before = parse_interval(datetime)
    return JobQuery(
        process_ids=tuple(processID or ()),
        statuses=parse_statuses(status),
        queue=queue,
        tag=tag,
        batch=batch,
        created_after=after,
        created_before=before,
        min_duration=minDuration,
        max_duration=maxDuration,
        # every job here is a process job
        matches_nothing=bool(type) and not any(t in ("process", "dps") for t in type or ()),
        limit=limit,
        cursor=next,
    )


@router.get("/jobs", summary="List jobs (newest first)")
def list_jobs(
    request: Request,
    query: JobQuery = Depends(job_query),
    user: str = Depends(current_user),
) -> dict[str, Any]:
    services = services_of(request)
    page = services.jobs.list_jobs(query, user)
    base = base_url(request)
    links = page_links(request, "/jobs", page.next_cursor)
    answer = {
        "jobs": [status_info(job, base) for job in page.items],
        "numberMatched": page.number_matched,
        "numberReturned": len(page.items),
        "links": links,
    }
    if not page.number_matched_exact:  # a lower bound: at least this many (see the docs)
        answer["numberMatchedExact"] = False
    return answer


@router.get("/jobs/{job_id}", summary="Job status")
def get_job(
    job_id: str,
    request: Request,
    wait: float = Query(
        0, ge=0, le=MAX_WAIT, description="seconds to wait for the job to end before answering"
    ),
    user: str = Depends(current_user),
) -> dict[str, Any]:
    jobs = services_of(request).jobs
    job = jobs.wait(job_id, user, wait) if wait else jobs.get(job_id, user)
    return status_info(job, base_url(request))


@router.delete("/jobs/{job_id}", summary="Cancel (dismiss) a job")
def dismiss_job(job_id: str, request: Request, user: str = Depends(current_user)) -> dict[str, Any]:
    """A queued job is dismissed at once; a running one is stopped by its supervisor, which
    this waits for (a few seconds) so that the answer is the dismissed statusInfo."""
    services = services_of(request)
    services.jobs.cancel(job_id, user)
    job = services.jobs.wait(job_id, user, services.settings.kill_grace + 5)
    info = status_info(job, base_url(request))
    if not job.status.terminal:  # still stopping: it can only end dismissed now
        info["status"] = JobStatus.DISMISSED.value
        info["message"] = "dismissed; the job is being stopped"
    return info


@router.post("/jobs/{job_id}/retry", status_code=201, summary="Run a job again as a new job")
def retry_job(job_id: str, request: Request, user: str = Depends(current_user)) -> JSONResponse:
    job = services_of(request).jobs.retry(job_id, user)
    base = base_url(request)
    return JSONResponse(
        status_info(job, base), status_code=201, headers={"Location": f"{base}/jobs/{job.id}"}
    )


@router.get("/jobs/{job_id}/results", summary="Job results (OGC results)", operation_id="getResult")
def job_results(job_id: str, request: Request, user: str = Depends(current_user)) -> Response:
    from opendps.api.ogc.execute import results_answer

    services = services_of(request)
    job = services.jobs.get(job_id, user)
    return results_answer(services, job, base_url(request), user, request)


def _guess(path: str) -> str:
    import mimetypes

    return mimetypes.guess_type(path)[0] or "application/octet-stream"


@router.get("/jobs/{job_id}/outputs", summary="Staged output files")
def job_outputs(job_id: str, request: Request, user: str = Depends(current_user)) -> dict[str, Any]:
    services = services_of(request)
    listing = services.jobs.outputs(job_id, user)
    base = base_url(request)
    for item in listing["outputs"]:
        item["href"] = f"{base}/jobs/{job_id}/outputs/{quote(item['path'])}"
    return listing


@router.get("/jobs/{job_id}/outputs/{path:path}", summary="Download one output file")
def download_output(
    job_id: str, path: str, request: Request, user: str = Depends(current_user)
) -> StreamingResponse:
    handle = services_of(request).jobs.open_output(job_id, path, user)

    def chunks():  # type: ignore[no-untyped-def]
        with handle:
            while block := handle.read(1 << 20):
                yield block

    return StreamingResponse(
        chunks(),
        media_type=_guess(path),
        headers=output_headers(path, "inline"),
    )


def output_headers(path: str, disposition: str) -> dict[str, str]:
    """Headers for a job's output file: the bytes are the job's, so the browser must not
    sniff them into something else nor run them with this site's rights (an
    ``output/page.html`` ran script with an admin's UI cookie)."""
    filename = path.rsplit("/", 1)[-1]
    ascii_name = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename
    )
    return {
        "Content-Disposition": (
            f"{disposition}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"
        ),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
    }


@router.get("/jobs/{job_id}/logs", summary="stdout and stderr (follow=true streams them, SSE)")
def job_logs(
    job_id: str, request: Request, follow: bool = Query(False), user: str = Depends(current_user)
) -> Any:
    services = services_of(request)
    if not follow:
        return services.jobs.logs(job_id, user)
    services.jobs.get(job_id, user)

    def events():  # type: ignore[no-untyped-def]
        for stream, text in services.jobs.follow_logs(job_id, user):
            yield f"event: {stream}\ndata: {json.dumps(text)}\n\n"
        job = services.jobs.get(job_id, user)
        yield f"event: end\ndata: {json.dumps(job.status.value)}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


@router.get("/jobs/{job_id}/metrics", summary="Timings, resource use, io, host")
def job_metrics(job_id: str, request: Request, user: str = Depends(current_user)) -> dict[str, Any]:
    return services_of(request).jobs.metrics(job_id, user)


@router.get("/jobs/{job_id}/events", summary="The job's history")
def job_events(job_id: str, request: Request, user: str = Depends(current_user)) -> dict[str, Any]:
    events = services_of(request).jobs.events(job_id, user)
    return {
        "events": [
            {
                "at": iso(e.at),
                "status": e.status.value,
                "reason": e.reason.value if e.reason else None,
                "message": e.message,
            }
            for e in events
        ]
    }

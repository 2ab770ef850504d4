"""/jobs: list, status, dismiss, results, outputs, logs, metrics, events."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from opendps.api.deps import base_url, current_user, page_links, services_of
from opendps.api.documents import iso, status_info
from opendps.errors import InvalidInput
from opendps.models import JobStatus
from opendps.service.algorithms import split_process_id
from opendps.service.statuses import parse_statuses
from opendps.store.jobstore import JobFilters

router = APIRouter(tags=["jobs"])


def parse_datetime_interval(value: str | None) -> tuple[datetime | None, datetime | None]:
    """OGC ``datetime``: an instant, ``a/b``, ``../b`` or ``a/..``."""
    if not value:
        return None, None

    def one(text: str) -> datetime | None:
        text = text.strip()
        if text in ("", ".."):
            return None
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(f"datetime: {text!r} is not an RFC 3339 date-time") from None

    if "/" in value:
        start, end = value.split("/", 1)
        return one(start), one(end)
    instant = one(value)
    return instant, instant


def job_filters(
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
) -> JobFilters:
    services = services_of(request)
    user = current_user(request)
    algorithm = version = None
    algorithm_ids: tuple[int, ...] = ()
    if processID:
        if len(processID) == 1:
            algorithm, version = split_process_id(processID[0])
        else:
            ids = []
            for pid in processID:
                try:
                    ids.append(services.algorithms.get(pid).id)
                except Exception:
                    continue
            algorithm_ids = tuple(ids) or (-1,)
    if type and not any(t in ("process", "dps") for t in type):
        algorithm_ids = (-1,)  # we only have process jobs
    after, before = parse_datetime_interval(datetime)
    owner = user if services.settings.auth and not services.identity.is_admin(user) else None
    return JobFilters(
        owner=owner,
        statuses=parse_statuses(status),
        algorithm=algorithm,
        version=version,
        algorithm_ids=algorithm_ids,
        queue=queue,
        tag=tag,
        batch_id=batch,
        created_after=after,
        created_before=before,
        min_duration=minDuration,
        max_duration=maxDuration,
    )


@router.get("/jobs", summary="List jobs (newest first)")
def list_jobs(
    request: Request,
    filters: JobFilters = Depends(job_filters),
    limit: int = Query(10, ge=1, le=10000),
    next: str | None = Query(None),
) -> dict[str, Any]:
    services = services_of(request)
    page = services.jobs.list(filters, limit=limit, cursor=next)
    base = base_url(request)
    links = page_links(request, "/jobs", page.next_cursor)
    return {
        "jobs": [status_info(job, base) for job in page.items],
        "numberMatched": page.number_matched,
        "numberReturned": len(page.items),
        "links": links,
    }


@router.get("/jobs/{job_id}", summary="Job status")
def get_job(job_id: str, request: Request, user: str = Depends(current_user)) -> dict[str, Any]:
    return status_info(services_of(request).jobs.get(job_id, user=user), base_url(request))


@router.delete("/jobs/{job_id}", summary="Cancel (dismiss) a job")
def dismiss_job(job_id: str, request: Request, user: str = Depends(current_user)) -> dict[str, Any]:
    """A queued job is dismissed at once; a running one is stopped by its supervisor, which
    this waits for (a few seconds) so that the answer is the dismissed statusInfo."""
    services = services_of(request)
    job = services.jobs.cancel(job_id, user=user)
    deadline = time.monotonic() + services.settings.kill_grace + 5
    while not job.status.terminal and time.monotonic() < deadline:
        time.sleep(0.1)
        job = services.jobs.get(job_id, user=user)
    info = status_info(job, base_url(request))
    if not job.status.terminal:  # still stopping: it can only end dismissed now
        info["status"] = JobStatus.DISMISSED.value
        info["message"] = "dismissed; the job is being stopped"
    return info


@router.post("/jobs/{job_id}/retry", status_code=201, summary="Run a job again as a new job")
def retry_job(job_id: str, request: Request, user: str = Depends(current_user)) -> JSONResponse:
    job = services_of(request).jobs.retry(job_id, user=user)
    base = base_url(request)
    return JSONResponse(
        status_info(job, base), status_code=201, headers={"Location": f"{base}/jobs/{job.id}"}
    )


@router.get("/jobs/{job_id}/results", summary="Job results (OGC results)", operation_id="getResult")
def job_results(job_id: str, request: Request, user: str = Depends(current_user)) -> Response:
    from opendps.api.ogc.execute import results_answer

    services = services_of(request)
    job = services.jobs.get(job_id, user=user)
    return results_answer(services, job, base_url(request), user, request)


def _guess(path: str) -> str:
    import mimetypes

    return mimetypes.guess_type(path)[0] or "application/octet-stream"


@router.get("/jobs/{job_id}/outputs", summary="Staged output files")
def job_outputs(job_id: str, request: Request, user: str = Depends(current_user)) -> dict[str, Any]:
    services = services_of(request)
    listing = services.jobs.outputs(job_id, user=user)
    base = base_url(request)
    for item in listing["outputs"]:
        item["href"] = f"{base}/jobs/{job_id}/outputs/{quote(item['path'])}"
    return listing


@router.get("/jobs/{job_id}/outputs/{path:path}", summary="Download one output file")
def download_output(
    job_id: str, path: str, request: Request, user: str = Depends(current_user)
) -> StreamingResponse:
    handle = services_of(request).jobs.open_output(job_id, path, user=user)

    def chunks():  # type: ignore[no-untyped-def]
        with handle:
            while block := handle.read(1 << 20):
                yield block

    filename = path.rsplit("/", 1)[-1]
    return StreamingResponse(
        chunks(),
        media_type=_guess(path),
        # A job's output is anyone's content: shown inline it must not run as our page.
        headers={
            "Content-Disposition": f'inline; filename="{filename}"',
            "Content-Security-Policy": "sandbox",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/jobs/{job_id}/logs", summary="stdout and stderr (follow=true streams them, SSE)")
def job_logs(
    job_id: str, request: Request, follow: bool = Query(False), user: str = Depends(current_user)
) -> Any:
    services = services_of(request)
    if not follow:
        return services.jobs.logs(job_id, user=user)
    services.jobs.get(job_id, user=user)

    def events():  # type: ignore[no-untyped-def]
        for stream, text in services.jobs.follow_logs(job_id, user=user):
            yield f"event: {stream}\ndata: {json.dumps(text)}\n\n"
        job = services.jobs.get(job_id, user=user)
        yield f"event: end\ndata: {json.dumps(job.status.value)}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


@router.get("/jobs/{job_id}/metrics", summary="Timings, resource use, io, host")
def job_metrics(job_id: str, request: Request, user: str = Depends(current_user)) -> dict[str, Any]:
    return services_of(request).jobs.metrics(job_id, user=user)


@router.get("/jobs/{job_id}/events", summary="The job's history")
def job_events(job_id: str, request: Request, user: str = Depends(current_user)) -> dict[str, Any]:
    events = services_of(request).jobs.events(job_id, user=user)
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

"""Dashboard, job list, job page, cancel and retry; small JSON answers for live refresh."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from opendps.api.deps import services_of
from opendps.api.ui.render import check_same_origin, format_duration, render, ui_user
from opendps.api.ui.render import format_bytes as size
from opendps.errors import InvalidInput, OpenDPSError
from opendps.models import Job, JobStatus
from opendps.service.queries import JobQuery, ProcessQuery
from opendps.service.statuses import parse_statuses

router = APIRouter(prefix="/ui", include_in_schema=False)

PAGE_SIZES = (25, 50, 100, 250)
LOG_LIMIT = 512 * 1024  # bytes of each stream shown on the page; the rest via /jobs/{id}/logs
NOTICES = {  # fixed texts, so a link cannot make the page say something else
    "cancel": "Cancel requested.",
    "retried": "Submitted again as this new job.",
    "submitted": "Job submitted.",
}
MAX_LIVE_IDS = 200


def run_time(job: Job, now: datetime | None = None) -> float | None:
    """Seconds the job has run (so far, while it runs)."""
    if job.started is None:
        return None
    end = job.finished or now or datetime.now(UTC)
    return max(0.0, (end - job.started).total_seconds())


def job_row(job: Job) -> dict[str, Any]:
    return {
        "status": job.status.value,
        "terminal": job.status.terminal,
        "duration": format_duration(run_time(job)),
        "message": job.message or "",
    }


# -- dashboard ----------------------------------------------------------------------------


@router.get("", include_in_schema=False)
def ui_root_redirect() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request) -> HTMLResponse:
    services = services_of(request)
    user = ui_user(request)
    counts = {
        status.value: services.jobs.list_jobs(
            JobQuery(statuses=(status,), limit=1), user
        ).number_matched
        for status in JobStatus
    }
    recent = services.jobs.list_jobs(JobQuery(limit=10), user)
    stats = services.job_store.queue_stats()
    now = datetime.now(UTC)
    workers_for = getattr(request.app.state, "workers_for", lambda name: None)
    queues = []
    for queue in services.settings.queues:
        entry = stats.get(queue.name, {})
        oldest = entry.get("oldest_accepted")
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        queues.append(
            {
                "config": queue,
                "default": queue.name == services.settings.default_queue,
                "depth": entry.get("accepted", 0),
                "running": entry.get("running", 0),
                "oldest_waiting": (now - oldest).total_seconds() if oldest else None,
                "workers": workers_for(queue.name),
            }
        )
    processes = services.algorithms.list_processes(ProcessQuery(limit=1), user).number_matched
    return render(
        request,
        "dashboard.html",
        {
            "counts": counts,
            "total": recent.number_matched,
            "recent": recent.items,
            "queues": queues,
            "process_count": processes,
            "run_time": run_time,
        },
    )


# -- the job list -------------------------------------------------------------------------


def job_query(form: dict[str, str], limit: int, cursor: str | None) -> JobQuery:
    """The list page's form -> the one job query."""
    return JobQuery(
        statuses=parse_statuses([form["status"]] if form["status"] else None),
        process_ids=(form["process"],) if form["process"] else (),
        queue=form["queue"] or None,
        tag=form["tag"] or None,
        batch=form["batch"] or None,
        limit=limit,
        cursor=cursor,
    )


@router.get("/jobs", response_class=HTMLResponse)
def job_list(request: Request) -> HTMLResponse:
    services = services_of(request)
    user = ui_user(request)
    query = request.query_params
    form = {key: query.get(key, "").strip() for key in ("status", "process", "queue", "tag")}
    form["batch"] = query.get("batch", "").strip()
    cursor = query.get("next") or None
    error = None
    page = None
    try:
        limit = int(query.get("limit") or PAGE_SIZES[0])
        if not 1 <= limit <= max(PAGE_SIZES):
            raise ValueError
    except ValueError:
        limit = PAGE_SIZES[0]
        error = f"limit must be a number from 1 to {max(PAGE_SIZES)}"
    if error is None:
        try:
            page = services.jobs.list_jobs(job_query(form, limit, cursor), user)
        except InvalidInput as exc:
            error = exc.message
    params = [(k, v) for k, v in form.items() if v]
    if limit != PAGE_SIZES[0]:
        params.append(("limit", str(limit)))
    return render(
        request,
        "jobs.html",
        {
            "form": form,
            "limit": limit,
            "page_sizes": PAGE_SIZES,
            "queues": [q.name for q in services.settings.queues],
            "page": page,
            "params": params,
            "paged": cursor is not None,
            "error": error,
            "run_time": run_time,
        },
        status=400 if error else 200,
    )


@router.get("/live/jobs")
def live_jobs(request: Request) -> JSONResponse:
    """Status of the listed jobs, for refreshing the rows of unfinished ones."""
    services = services_of(request)
    user = ui_user(request)
    ids = tuple(request.query_params.getlist("id")[:MAX_LIVE_IDS])
    rows: dict[str, Any] = {}
    if ids:
        page = services.jobs.list_jobs(JobQuery(job_ids=ids, limit=len(ids)), user)
        rows = {job.id: job_row(job) for job in page.items}
    return JSONResponse({"jobs": rows}, headers={"Cache-Control": "no-store"})


# -- one job ------------------------------------------------------------------------------


def read_logs(services: Any, job: Job) -> dict[str, dict[str, Any]]:
    """Each stream's text (its last LOG_LIMIT bytes) and its length, where polling resumes."""
    logs = {}
    for stream in ("stdout", "stderr"):
        data = services.jobs.read_log(job, stream).encode()
        shown = data[-LOG_LIMIT:] if len(data) > LOG_LIMIT else data
        logs[stream] = {
            "text": shown.decode(errors="replace"),
            "offset": len(data),
            "truncated": len(data) > LOG_LIMIT,
        }
    return logs


def metric_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """The metrics a person looks at first, formatted; everything else is in the JSON."""
    rows = [
        ("Queue wait", format_duration(metrics.get("queue_wait_seconds"))),
        ("Run time", format_duration(metrics.get("run_seconds"))),
    ]
    if "run_wall_seconds" in metrics:
        rows.append(("Run command", format_duration(metrics["run_wall_seconds"])))
    if "cpu_user_seconds" in metrics:
        user, system = metrics.get("cpu_user_seconds") or 0, metrics.get("cpu_system_seconds") or 0
        rows.append(("CPU", f"{user:.2f} s user, {system:.2f} s system"))
    if metrics.get("peak_memory_bytes") is not None:
        peak = size(metrics["peak_memory_bytes"])
        limit = metrics.get("memory_limit_bytes")
        rows.append(("Peak memory", f"{peak} of {size(limit)}" if limit else peak))
    localize = metrics.get("localize")
    if isinstance(localize, dict):
        rows.append(
            (
                "Downloaded",
                f"{size(localize.get('bytes'))} in {localize.get('files', 0)} file(s), "
                f"{format_duration(localize.get('seconds'))}",
            )
        )
    stage = metrics.get("stage")
    if isinstance(stage, dict):
        rows.append(
            (
                "Staged",
                f"{size(stage.get('bytes'))} in {stage.get('files', 0)} file(s), "
                f"{format_duration(stage.get('seconds'))}",
            )
        )
    host = metrics.get("host")
    if isinstance(host, dict) and host.get("hostname"):
        rows.append(("Host", str(host["hostname"])))
    if metrics.get("isolation"):  # DESIGN §12: the box the job ran in
        who = f" as {metrics['job_user']}" if metrics.get("job_user") else ""
        limited = ", ".join(metrics.get("limits") or []) or "none"
        rows.append(("Isolation", f"{metrics['isolation']}{who}; cgroup limits: {limited}"))
    return rows


def output_href(request: Request, job: Job, path: str) -> str:
    """The API's download route; with auth on a browser has no token header, so the UI's
    own route (which reads the sign-in cookie) serves it."""
    prefix = "/ui" if services_of(request).policy.signs_in else ""
    return f"{prefix}/jobs/{job.id}/outputs/{quote(path)}"


def job_page(
    request: Request, job_id: str, *, error: str | None = None, status: int = 200
) -> HTMLResponse:
    services = services_of(request)
    user = ui_user(request)
    job = services.jobs.get(job_id, user)
    outputs: dict[str, Any] = {"location": None, "outputs": []}
    outputs_error = None
    if job.status.terminal:
        try:
            outputs = services.jobs.outputs(job.id, user)
        except OpenDPSError as exc:
            outputs_error = exc.message
    for item in outputs["outputs"]:
        item["href"] = output_href(request, job, item["path"])
    metrics = services.jobs.metrics(job.id, user)
    notice = NOTICES.get(request.query_params.get("done", ""))
    return render(
        request,
        "job.html",
        {
            "job": job,
            "events": services.jobs.events(job.id, user),
            "metrics": metrics,
            "metric_rows": metric_rows(metrics),
            "outputs": outputs,
            "outputs_error": outputs_error,
            "logs": read_logs(services, job),
            "run_time": run_time(job),
            "notice": notice,
            "error": error,
        },
        status=status,
    )


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_detail(job_id: str, request: Request) -> HTMLResponse:
    return job_page(request, job_id)


@router.get("/live/jobs/{job_id}")
def live_job(job_id: str, request: Request) -> JSONResponse:
    """The job's status and what its streams wrote after the given byte offsets."""
    services = services_of(request)
    job = services.jobs.get(job_id, ui_user(request))
    answer: dict[str, Any] = job_row(job)
    for stream in ("stdout", "stderr"):
        try:
            offset = max(0, int(request.query_params.get(stream, "0")))
        except ValueError:
            offset = 0
        answer[stream], answer[f"{stream}_offset"] = services.jobs.read_log_chunk(
            job, stream, offset
        )
    return JSONResponse(answer, headers={"Cache-Control": "no-store"})


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(job_id: str, request: Request) -> Response:
    check_same_origin(request)
    services = services_of(request)
    user = await run_in_threadpool(ui_user, request)
    await run_in_threadpool(lambda: services.jobs.cancel(job_id, user))
    return RedirectResponse(f"/ui/jobs/{job_id}?done=cancel", status_code=303)


@router.post("/jobs/{job_id}/retry")
async def retry_job(job_id: str, request: Request) -> Response:
    check_same_origin(request)
    services = services_of(request)
    user = await run_in_threadpool(ui_user, request)
    try:
        job = await run_in_threadpool(lambda: services.jobs.retry(job_id, user))
    except OpenDPSError as exc:  # e.g. its process was deleted: say so on the job's page
        return await run_in_threadpool(
            job_page, request, job_id, error=exc.message, status=exc.status
        )
    return RedirectResponse(f"/ui/jobs/{job.id}?done=retried", status_code=303)


@router.get("/jobs/{job_id}/outputs/{path:path}")
def download_output(job_id: str, path: str, request: Request) -> Response:
    """Same as ``GET /jobs/{id}/outputs/{path}``, for a person signed in with a cookie."""
    from opendps.api.jobs import download_output as api_download
    from opendps.api.jobs import output_headers

    response = api_download(job_id, path, request, user=ui_user(request))
    # Under /ui/ the browser holds the session cookie: never render a job's file here.
    response.headers.update(output_headers(path, "attachment"))
    return response

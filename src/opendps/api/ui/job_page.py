"""One job's page: timeline, failure in words, logs with search and live tail, outputs with
previews, the memory/CPU chart with the queue's limit, a right-sizing hint, cancel/retry and
snippets to run it again. Everything comes from the service layer."""

from __future__ import annotations

import mimetypes
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from opendps.api.deps import base_url, services_of
from opendps.api.ui import snippets
from opendps.api.ui.charts import memory_chart
from opendps.api.ui.jobs import job_row, run_time
from opendps.api.ui.render import ENV, check_same_origin, format_duration, render, ui_user
from opendps.api.ui.render import format_bytes as size
from opendps.errors import OpenDPSError
from opendps.models import Job, JobStatus
from opendps.service.queues import why_waiting
from opendps.service.timeline import bar_segments, explain, right_size, timeline

router = APIRouter(prefix="/ui", include_in_schema=False)

LOG_LIMIT = 512 * 1024  # bytes of each stream shown on the page; the rest via /jobs/{id}/logs
NOTICES = {  # fixed texts, so a link cannot make the page say something else
    "cancel": "Cancel requested.",
    "retried": "Submitted again as this new job.",
    "submitted": "Job submitted.",
}
IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp", "image/svg+xml"}
TEXT_SUFFIXES = (".txt", ".log", ".csv", ".tsv", ".json", ".md", ".yml", ".yaml", ".xml", ".out")
PREVIEW_BYTES = 4096  # of each text output
MAX_PREVIEWS = 8  # text previews per page; images are fetched by the browser
MAX_IMAGE_PREVIEW = 5 * 1024 * 1024  # larger images are only linked


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


def search_logs(logs: dict[str, dict[str, Any]], query: str) -> list[dict[str, Any]]:
    """Lines that contain ``query`` (any case), with their stream and line number."""
    needle = query.lower()
    found = []
    for stream, log in logs.items():
        for number, line in enumerate(log["text"].splitlines(), 1):
            if needle in line.lower():
                found.append({"stream": stream, "line": number, "text": line})
    return found[:1000]


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
    for key, label in (("localize", "Downloaded"), ("stage", "Staged")):
        part = metrics.get(key)
        if isinstance(part, dict):
            rows.append(
                (
                    label,
                    f"{size(part.get('bytes'))} in {part.get('files', 0)} file(s), "
                    f"{format_duration(part.get('seconds'))}",
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


def add_previews(services: Any, job: Job, user: str, items: list[dict[str, Any]]) -> None:
    """Mark images for an <img> preview and read the start of small text files."""
    texts = 0
    for item in items:
        kind = mimetypes.guess_type(item["path"])[0] or ""
        name = item["path"].rsplit("/", 1)[-1]
        if kind in IMAGE_TYPES and (item.get("size") or 0) <= MAX_IMAGE_PREVIEW:
            item["preview"] = "image"
        elif (kind.startswith("text/") or name.endswith(TEXT_SUFFIXES)) and texts < MAX_PREVIEWS:
            if name in ("_stdout.txt", "_stderr.txt"):
                continue  # the logs are shown in full below
            try:
                with services.jobs.open_output(job.id, item["path"], user) as handle:
                    data = handle.read(PREVIEW_BYTES + 1)
            except OpenDPSError:
                continue
            item["preview"] = "text"
            item["text"] = data[:PREVIEW_BYTES].decode(errors="replace")
            item["cut"] = len(data) > PREVIEW_BYTES
            texts += 1


def queue_document(request: Request, name: str) -> dict[str, Any] | None:
    from opendps.api.meta import list_queues

    return next((q for q in list_queues(request)["queues"] if q["name"] == name), None)


def chart_html(chart: dict[str, Any] | None) -> str:
    return ENV.get_template("_chart.html").render(chart=chart)


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
    add_previews(services, job, user, outputs["outputs"])
    metrics = services.jobs.metrics(job.id, user)
    settings = services.settings
    queue = settings.queue(job.queue)
    spans = timeline(job, services.jobs.attempts(job.id, user))
    logs = read_logs(services, job)
    query = request.query_params.get("q", "").strip()
    base = base_url(request)
    memory_limit = metrics.get("memory_limit_bytes") or (queue.memory if queue else None)
    chart = memory_chart(metrics.get("samples") or [], memory_limit)
    return render(
        request,
        "job.html",
        {
            "job": job,
            "events": services.jobs.events(job.id, user),
            "spans": spans,
            "bar": bar_segments(spans),
            "explanation": explain(job, queue),
            "waiting": (
                why_waiting(services.algorithms.get_by_id, job, queue_document(request, job.queue))
                if job.status == JobStatus.ACCEPTED
                else None
            ),
            "hint": right_size(metrics.get("peak_memory_bytes"), queue, settings.queues),
            "metrics": {k: v for k, v in metrics.items() if k != "samples"},
            "metric_rows": metric_rows(metrics),
            "chart": chart,
            "outputs": outputs,
            "outputs_error": outputs_error,
            "logs": logs,
            "query": query,
            "matches": search_logs(logs, query) if query else None,
            "run_time": run_time(job),
            "notice": NOTICES.get(request.query_params.get("done", "")),
            "error": error,
            "snippets": {
                "run_local": snippets.run_local(job, base),
                "opendps": snippets.opendps_python(job, base),
                "maap": snippets.maap_python(job, base),
            },
        },
        status=status,
    )


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_detail(job_id: str, request: Request) -> HTMLResponse:
    return job_page(request, job_id)


@router.get("/live/jobs/{job_id}")
def live_job(job_id: str, request: Request) -> JSONResponse:
    """The job's status, what its streams wrote after the given byte offsets, and (with
    ``chart=1``) its memory/CPU chart as it is now."""
    services = services_of(request)
    user = ui_user(request)
    job = services.jobs.get(job_id, user)
    answer: dict[str, Any] = job_row(job)
    for stream in ("stdout", "stderr"):
        try:
            offset = max(0, int(request.query_params.get(stream, "0")))
        except ValueError:
            offset = 0
        # Whole lines only while it runs: a secret split over two reads would escape the mask.
        answer[stream], answer[f"{stream}_offset"] = services.jobs.read_log_chunk(
            job, stream, offset
        )
    if request.query_params.get("chart") == "1":
        metrics = services.jobs.metrics(job.id, user)
        queue = services.settings.queue(job.queue)
        limit = metrics.get("memory_limit_bytes") or (queue.memory if queue else None)
        answer["chart"] = chart_html(memory_chart(metrics.get("samples") or [], limit))
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

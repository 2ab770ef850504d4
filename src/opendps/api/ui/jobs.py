"""Dashboard and the job list: status tiles, filters, sortable columns, stable paging, live
refresh that keeps the reader's place, and cancel/retry of several jobs at once."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from opendps.api.deps import services_of
from opendps.api.ui.render import check_same_origin, format_duration, render, ui_user
from opendps.errors import InvalidInput, OpenDPSError
from opendps.models import Job
from opendps.service.queries import BatchQuery, JobQuery, ProcessQuery
from opendps.service.queues import queue_note
from opendps.service.statuses import parse_statuses

router = APIRouter(prefix="/ui", include_in_schema=False)

PAGE_SIZES = (25, 50, 100, 250)
MAX_LIVE_IDS = 250
MAX_SELECTED = 1000  # jobs one bulk action may name
FILTER_FIELDS = ("status", "process", "version", "queue", "tag", "batch", "q", "since", "until")
COLUMNS = (  # (sort key, heading); the first sort of each is descending when clicked
    ("created", "Created"),
    ("process", "Process"),
    ("status", "Status"),
    ("queue", "Queue"),
    ("priority", "Priority"),
    ("duration", "Run time"),
)


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
        "reason": job.reason.value if job.reason else "",
    }


# -- dashboard ----------------------------------------------------------------------------


@router.get("", include_in_schema=False)
def ui_root_redirect() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request) -> HTMLResponse:
    from opendps.api.meta import list_queues

    services = services_of(request)
    user = ui_user(request)
    counts = services.jobs.count_by_status(JobQuery(), user)
    recent = services.jobs.list_jobs(JobQuery(limit=10, count=False), user)
    queues = list_queues(request)["queues"]
    for queue in queues:
        queue["note"] = queue_note(queue)
    return render(
        request,
        "dashboard.html",
        {
            "counts": counts,
            "total": sum(counts.values()),
            "recent": recent.items,
            "queues": queues,
            "process_count": services.algorithms.list_processes(
                ProcessQuery(limit=1), user
            ).number_matched,
            "batch_count": services.batches.list(BatchQuery(limit=1), user).number_matched,
            "run_time": run_time,
        },
    )


# -- the job list -------------------------------------------------------------------------


def _time(value: str, name: str) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{name}: {value!r} is not a date and time (YYYY-MM-DDTHH:MM)")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def job_query(form: dict[str, str], **page: Any) -> JobQuery:
    """The listing's form fields (the same ones the live refresh sends) -> the one job
    query; ``page`` adds limit, cursor, sort, count or after_seq."""
    return JobQuery(
        statuses=parse_statuses([form["status"]] if form["status"] else None),
        process_ids=(form["process"],) if form["process"] else (),
        version=form["version"] or None,
        queue=form["queue"] or None,
        tag=form["tag"] or None,
        batch=form["batch"] or None,
        text=form["q"] or None,
        created_after=_time(form["since"], "from"),
        created_before=_time(form["until"], "until"),
        **page,
    )


def read_form(query: Any) -> dict[str, str]:
    return {key: str(query.get(key, "")).strip() for key in FILTER_FIELDS}


def _sort(value: str) -> str:
    key = value.lstrip("-")
    return value if key in dict(COLUMNS) else "-created"


@router.get("/jobs", response_class=HTMLResponse)
def job_list(request: Request) -> HTMLResponse:
    services = services_of(request)
    user = ui_user(request)
    query = request.query_params
    form = read_form(query)
    sort = _sort(query.get("sort", "-created"))
    cursor = query.get("next") or None
    error = None
    page = None
    counts: dict[str, int] = {}
    try:
        limit = int(query.get("limit") or PAGE_SIZES[0])
        if not 1 <= limit <= max(PAGE_SIZES):
            raise ValueError
    except ValueError:
        limit = PAGE_SIZES[0]
        error = f"limit must be a number from 1 to {max(PAGE_SIZES)}"
    if error is None:
        try:
            listing = job_query(form, limit=limit, cursor=cursor, sort=sort, count=False)
            page = services.jobs.list_jobs(listing, user)
            # The tiles count every status; the total is theirs (one query, not two).
            counts = services.jobs.count_by_status(listing, user)
            matched = [s.value for s in listing.statuses] or list(counts)
            page = replace(page, number_matched=sum(counts[s] for s in matched))
        except InvalidInput as exc:
            error = exc.message
    params = [(k, v) for k, v in form.items() if v]
    if limit != PAGE_SIZES[0]:
        params.append(("limit", str(limit)))
    sorted_params = params + ([("sort", sort)] if sort != "-created" else [])
    return render(
        request,
        "jobs.html",
        {
            "form": form,
            "limit": limit,
            "page_sizes": PAGE_SIZES,
            "queues": [q.name for q in services.settings.queues],
            "page": page,
            "counts": counts,
            "all_count": sum(counts.values()),
            "params": params,
            "sorted_params": sorted_params,
            "sort": sort,
            "columns": COLUMNS,
            "paged": cursor is not None,
            "top_seq": page.items[0].seq if page and page.items and not cursor else "",
            "error": error,
            "run_time": run_time,
            "done": bulk_notice(request),
        },
        status=400 if error else 200,
    )


@router.get("/live/jobs")
def live_jobs(request: Request) -> JSONResponse:
    """Status of the listed jobs (to refresh their rows in place), the tiles' counts, and how
    many newer jobs match (offered as a link, so the rows a person reads never move)."""
    services = services_of(request)
    user = ui_user(request)
    query = request.query_params
    ids = tuple(query.getlist("id")[:MAX_LIVE_IDS])
    answer: dict[str, Any] = {"jobs": {}}
    if ids:
        page = services.jobs.list_jobs(JobQuery(job_ids=ids, limit=len(ids), count=False), user)
        answer["jobs"] = {job.id: job_row(job) for job in page.items}
    if query.get("counts") == "1":
        try:
            form = read_form(query)
            answer["counts"] = services.jobs.count_by_status(job_query(form), user)
            top = query.get("top", "")
            if top.isdigit():
                newer = job_query(form, after_seq=int(top), limit=1)
                answer["newer"] = services.jobs.list_jobs(newer, user).number_matched
        except InvalidInput:
            pass
    return JSONResponse(answer, headers={"Cache-Control": "no-store"})


# -- several jobs at once -----------------------------------------------------------------


def bulk_notice(request: Request) -> str | None:
    """The result of a bulk action, from numbers in the redirect (never free text)."""
    query = request.query_params
    numbers = {k: query.get(k, "") for k in ("cancelled", "retried", "skipped")}
    if not any(v.isdigit() for v in numbers.values()):
        return None
    parts = []
    if numbers["cancelled"].isdigit():
        parts.append(f"{int(numbers['cancelled'])} job(s) cancelled")
    if numbers["retried"].isdigit():
        parts.append(f"{int(numbers['retried'])} job(s) submitted again")
    if numbers["skipped"].isdigit() and int(numbers["skipped"]):
        parts.append(f"{int(numbers['skipped'])} skipped (already finished, or not allowed)")
    return "; ".join(parts) + "."


@router.post("/jobs/actions")
async def bulk_action(request: Request) -> Response:
    """Cancel or retry the selected jobs, then go back to the same listing."""
    check_same_origin(request)
    services = services_of(request)
    form = await request.form()
    action = str(form.get("action") or "")
    ids = [str(v) for v in form.getlist("job")][:MAX_SELECTED]
    back = str(form.get("back") or "/ui/jobs")
    if not back.startswith("/ui/jobs") or "\\" in back:
        back = "/ui/jobs"
    path, _, old = back.partition("?")
    kept = [(k, v) for k, v in parse_qsl(old) if k not in ("cancelled", "retried", "skipped")]
    back = f"{path}?{urlencode(kept)}" if kept else path
    if action not in ("cancel", "retry"):
        raise InvalidInput("choose Cancel or Retry for the selected jobs")
    if not ids:
        raise InvalidInput("select at least one job first (the boxes in the first column)")

    def run() -> tuple[int, int]:
        user = ui_user(request)
        done = skipped = 0
        for job_id in ids:
            try:
                job = services.jobs.get(job_id, user)
                if action == "cancel":
                    if job.status.terminal:
                        skipped += 1
                        continue
                    services.jobs.cancel(job_id, user)
                else:
                    if not job.status.terminal:
                        skipped += 1
                        continue
                    services.jobs.retry(job_id, user)
                done += 1
            except OpenDPSError:
                skipped += 1
        return done, skipped

    done, skipped = await run_in_threadpool(run)
    key = "cancelled" if action == "cancel" else "retried"
    glue = "&" if "?" in back else "?"
    return RedirectResponse(f"{back}{glue}{key}={done}&skipped={skipped}", status_code=303)

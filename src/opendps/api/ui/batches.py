"""Batch pages: the list, one batch's progress by status, its statistics (when the batch
document has them), cancel, and retry of its failed jobs by reason."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from opendps.api.deps import base_url, services_of
from opendps.api.ui.render import ENV, check_same_origin, render, ui_user
from opendps.errors import InvalidInput
from opendps.models import Batch, JobStatus, Reason
from opendps.service.queries import BatchQuery

router = APIRouter(prefix="/ui", include_in_schema=False)

# Order of the progress bar's segments: done first, then what is still to come.
BAR_ORDER = ("successful", "failed", "dismissed", "running", "accepted")
NOTICES = {"cancel": "Cancel requested for every unfinished job of this batch."}


def progress(batch: Batch, width: float = 1000.0) -> dict[str, Any]:
    """Segments of the progress bar and the counts in words."""
    total = max(batch.total, sum(batch.counts.values()), 1)
    x, segments = 0.0, []
    for status in BAR_ORDER:
        n = batch.counts.get(status, 0)
        if n:
            w = width * n / total
            segments.append({"status": status, "n": n, "x": round(x, 2), "w": round(w, 2)})
            x += w
    finished = sum(batch.counts.get(s.value, 0) for s in JobStatus if s.terminal)
    return {"segments": segments, "finished": finished, "total": batch.total}


def batch_doc(request: Request, batch: Batch, user: str) -> dict[str, Any]:
    """The batch document of ``GET /batches/{id}``, with its ``stats``."""
    from opendps.api.batches import batch_document

    stats = services_of(request).batches.stats(batch.id, user=user)
    return batch_document(batch, base_url(request), stats)


def progress_html(batch: Batch) -> str:
    return ENV.get_template("_progress.html").render(batch=batch, progress=progress(batch))


@router.get("/batches", response_class=HTMLResponse)
def batch_list(request: Request) -> HTMLResponse:
    services = services_of(request)
    user = ui_user(request)
    cursor = request.query_params.get("next") or None
    error = None
    try:
        page = services.batches.list(BatchQuery(limit=25, cursor=cursor), user)
    except InvalidInput as exc:
        page, error = services.batches.list(BatchQuery(limit=25), user), exc.message
    rows = [{"batch": b, "progress": progress(b)} for b in page.items]
    return render(
        request,
        "batches.html",
        {"page": page, "rows": rows, "paged": cursor is not None, "error": error},
        status=400 if error else 200,
    )


@router.get("/batches/{batch_id}", response_class=HTMLResponse)
def batch_detail(batch_id: str, request: Request) -> HTMLResponse:
    return batch_page(request, batch_id)


def batch_page(
    request: Request, batch_id: str, *, error: str | None = None, status: int = 200
) -> HTMLResponse:
    services = services_of(request)
    user = ui_user(request)
    batch = services.batches.get(batch_id, user=user)
    document = batch_doc(request, batch, user)
    stats = document.get("stats") or None
    retried = request.query_params.get("retried", "")
    notice = NOTICES.get(request.query_params.get("done", ""))
    if retried.isdigit():
        notice = f"{int(retried)} job(s) put back in the queue (each keeps its history)."
    return render(
        request,
        "batch.html",
        {
            "batch": batch,
            "progress": progress(batch),
            "stats": stats,
            "reasons": [r.value for r in Reason],
            "new_batch": request.query_params.get("new", ""),
            "notice": notice,
            "error": error,
        },
        status=status,
    )


@router.get("/live/batches/{batch_id}")
def live_batch(batch_id: str, request: Request) -> JSONResponse:
    services = services_of(request)
    batch = services.batches.get(batch_id, user=ui_user(request))
    finished = progress(batch)["finished"]
    return JSONResponse(
        {
            "counts": batch.counts,
            "total": batch.total,
            "done": finished >= batch.total,
            "progress": progress_html(batch),
        },
        headers={"Cache-Control": "no-store"},
    )


@router.post("/batches/{batch_id}/cancel")
async def cancel_batch(batch_id: str, request: Request) -> Response:
    check_same_origin(request)
    services = services_of(request)
    user = await run_in_threadpool(ui_user, request)
    await run_in_threadpool(lambda: services.batches.cancel(batch_id, user=user))
    return RedirectResponse(f"/ui/batches/{batch_id}?done=cancel", status_code=303)


@router.post("/batches/{batch_id}/retry")
async def retry_batch(batch_id: str, request: Request) -> Response:
    check_same_origin(request)
    services = services_of(request)
    form = await request.form()
    words = [str(v) for v in form.getlist("reason")]
    try:
        reasons = [Reason(w) for w in words] if words else None
    except ValueError:
        raise InvalidInput(
            f"unknown reason among {words}; use {', '.join(r.value for r in Reason)}"
        )
    user = await run_in_threadpool(ui_user, request)
    words = [r.value for r in reasons] if reasons else []
    ids = await run_in_threadpool(
        lambda: services.batches.retry(batch_id, user=user, reasons=words)
    )
    if not ids:
        return await run_in_threadpool(
            batch_page, request, batch_id, error="nothing to retry: no job ended that way"
        )
    return RedirectResponse(f"/ui/batches/{batch_id}?retried={len(ids)}", status_code=303)

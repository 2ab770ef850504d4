"""/batches: submit many jobs in one call (JSON, CSV or JSON Lines), watch them (counts,
statistics, the report), cancel or retry them together (DESIGN §14)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from opendps.api.batch_input import (
    BatchRows,
    Shared,
    rows_from_csv,
    rows_from_json,
    rows_from_ndjson,
)
from opendps.api.bodies import parse_json
from opendps.api.deps import base_url, current_user, page_links, services_of
from opendps.errors import InvalidInput
from opendps.models import Batch
from opendps.service.notifications import parse_notify
from opendps.service.queries import BatchQuery

router = APIRouter(tags=["batches"])
CSV_TYPES = ("text/csv", "application/csv")
NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/jsonlines")


def batch_document(batch: Batch, base: str, stats: dict[str, Any] | None = None) -> dict[str, Any]:
    document: dict[str, Any] = {
        "batchID": batch.id,
        "process": batch.process,
        "total": batch.total,
        "counts": batch.counts,
        "created": batch.created.isoformat(),
        "max_running": batch.max_running,
        "links": [
            {"href": f"{base}/batches/{batch.id}", "rel": "self", "type": "application/json"},
            {"href": f"{base}/jobs?batch={batch.id}", "rel": "jobs", "type": "application/json"},
            {
                "href": f"{base}/batches/{batch.id}/report",
                "rel": "report",
                "type": "application/json",
            },
        ],
    }
    if stats is not None:
        document["stats"] = stats
    return document


def _int_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput(f"query parameter {name} must be an integer; got {raw!r}") from None


def _shared_from_query(request: Request) -> Shared:
    params = request.query_params
    process = params.get("process")
    if not process:
        raise InvalidInput(
            "a CSV or JSON-lines batch names its process in the query: "
            "POST /batches?process=name:version[&queue=…&tag=…&priority=…]"
        )
    priority = _int_param(request, "priority")
    if priority is not None and not 0 <= priority <= 9:
        raise InvalidInput(f"query parameter priority must be 0..9; got {priority}")
    return Shared(
        process=process,
        queue=params.get("queue") or None,
        tags=[t for t in params.getlist("tag") if t],
        priority=5 if priority is None else priority,
        dedup=(params.get("dedup") or "").lower() in {"true", "1", "yes"},
    )


def _notify_from_query(request: Request) -> Any:
    raw = request.query_params.get("notify")
    if not raw:
        return None
    return parse_json(raw, "notify query parameter")


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the batch body is not UTF-8 (byte {exc.start})") from None


@router.post("/batches", status_code=201, summary="Submit a batch of jobs")
async def submit_batch(request: Request, user: str = Depends(current_user)) -> JSONResponse:
    """A JSON body ``{"process": "name[:version]", "jobs": [{"inputs": {…}, "tag": …}, …],
    "queue", "priority", "tags", "dedup", "max_running", "notify"}``; or a CSV (``text/csv``:
    header = input names, plus optional queue, tag, priority columns) or JSON Lines
    (``application/x-ndjson``) body with ``process`` and the shared values as query
    parameters. Every row is validated before any job is created; a bad row is refused
    naming its row, line and column."""
    services = services_of(request)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    base = base_url(request)

    def submit() -> dict[str, Any]:
        if media_type in CSV_TYPES or media_type in NDJSON_TYPES:
            shared = _shared_from_query(request)
            text = _decode(raw)
            rows: BatchRows = (
                rows_from_csv(text, shared)
                if media_type in CSV_TYPES
                else rows_from_ndjson(text, shared)
            )
            max_running = _int_param(request, "max_running")
            notify = _notify_from_query(request)
        else:
            body = parse_json(raw, "batch request")
            shared, rows = rows_from_json(body)
            max_running = body.get("max_running")
            if max_running is not None and not isinstance(max_running, int):
                raise InvalidInput(f"max_running must be an integer; got {max_running!r}")
            notify = body.get("notify")
        submitted = services.batches.submit(
            rows.submissions,
            user=user,
            where=rows.where,
            max_running=max_running,
            notify=parse_notify(notify, services.settings),
            base_url=base,
        )
        document = batch_document(submitted.batch, base)
        document["jobIDs"] = submitted.job_ids
        document["deduped"] = submitted.deduped
        return document

    document = await run_in_threadpool(submit)
    return JSONResponse(
        document, status_code=201, headers={"Location": f"{base}/batches/{document['batchID']}"}
    )


@router.get("/batches", summary="The caller's batches, newest first (an admin's: all)")
def list_batches(
    request: Request,
    limit: int = Query(25, ge=1, le=10000),
    next: str | None = Query(None),
    user: str = Depends(current_user),
) -> dict[str, Any]:
    services = services_of(request)
    page = services.batches.list(BatchQuery(limit=limit, cursor=next), user)
    base = base_url(request)
    return {
        "batches": [batch_document(batch, base) for batch in page.items],
        "numberMatched": page.number_matched,
        "links": page_links(request, "/batches", page.next_cursor),
    }


@router.get("/batches/{batch_id}", summary="Batch counts per status and statistics")
def get_batch(batch_id: str, request: Request, user: str = Depends(current_user)) -> dict[str, Any]:
    batches = services_of(request).batches
    batch = batches.get(batch_id, user=user)
    return batch_document(batch, base_url(request), batches.stats(batch_id, user=user))


@router.get("/batches/{batch_id}/report", summary="The end-of-batch report")
def batch_report(
    batch_id: str, request: Request, user: str = Depends(current_user)
) -> dict[str, Any]:
    return services_of(request).batches.report(batch_id, user=user)


@router.delete("/batches/{batch_id}", summary="Cancel every unfinished job of a batch")
def cancel_batch(
    batch_id: str, request: Request, user: str = Depends(current_user)
) -> dict[str, Any]:
    batch = services_of(request).batches.cancel(batch_id, user=user)
    return batch_document(batch, base_url(request))


@router.post(
    "/batches/{batch_id}/retry",
    summary="Put the batch's failed and dismissed jobs back in the queue",
)
async def retry_batch(
    batch_id: str, request: Request, user: str = Depends(current_user)
) -> JSONResponse:
    """Optional body ``{"reasons": ["oom", …], "queue": "dps-worker-16gb"}``: only the jobs
    that ended for those reasons, moved to that queue. The jobs keep their ids and history."""
    services = services_of(request)
    raw = await request.body()
    body: Any = {}
    if raw.strip():
        body = parse_json(raw, "retry request")
    if not isinstance(body, dict):
        raise InvalidInput('the retry request is an object: {"reasons": [...], "queue": "..."}')
    reasons = body.get("reasons") or []
    if isinstance(reasons, str):
        reasons = [reasons]
    if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
        raise InvalidInput(f"reasons must be a list of reason words; got {reasons!r}")
    queue = body.get("queue")
    if queue is not None and not isinstance(queue, str):
        raise InvalidInput(f"queue must be a queue name; got {queue!r}")

    def retry() -> dict[str, Any]:
        ids = services.batches.retry(batch_id, user=user, reasons=reasons, queue=queue or None)
        document = batch_document(services.batches.get(batch_id, user=user), base_url(request))
        document["jobIDs"] = ids
        if not ids:
            document["detail"] = "nothing to retry"
        return document

    return JSONResponse(await run_in_threadpool(retry))

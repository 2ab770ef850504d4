"""/batches: submit many jobs in one call, count them, cancel or retry them together."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from opendps.api.deps import base_url, current_user, services_of
from opendps.api.execution import decode_value
from opendps.errors import InvalidInput
from opendps.models import Batch
from opendps.service.jobs import Submission

router = APIRouter(tags=["batches"])
MAX_BATCH = 100_000


def batch_document(batch: Batch, base: str) -> dict[str, Any]:
    return {
        "batchID": batch.id,
        "total": batch.total,
        "counts": batch.counts,
        "created": batch.created.isoformat(),
        "links": [
            {"href": f"{base}/batches/{batch.id}", "rel": "self", "type": "application/json"},
            {"href": f"{base}/jobs?batch={batch.id}", "rel": "jobs", "type": "application/json"},
        ],
    }


@router.post("/batches", status_code=201, summary="Submit a batch of jobs")
async def submit_batch(request: Request, user: str = Depends(current_user)) -> JSONResponse:
    """Body: ``{"process": "name[:version]", "jobs": [{"inputs": {…}, "tag": …}, …],
    "queue": …, "priority": …, "tags": […]}``. All jobs are validated before any is created."""
    services = services_of(request)
    try:
        body = await request.json()
    except ValueError as exc:
        raise InvalidInput(f"the batch request is not valid JSON: {exc}") from exc
    if not isinstance(body, dict) or not body.get("process"):
        raise InvalidInput("a batch needs 'process' (name or name:version) and 'jobs'")
    entries = body.get("jobs")
    if not isinstance(entries, list) or not entries:
        raise InvalidInput("'jobs' must be a non-empty list of {\"inputs\": {...}} objects")
    if len(entries) > MAX_BATCH:
        raise InvalidInput(f"a batch holds at most {MAX_BATCH} jobs; split it")
    common_tags = body.get("tags") or []
    submissions = []
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise InvalidInput(f"jobs[{n}] must be an object with 'inputs'")
        inputs = entry.get(
            "inputs", {k: v for k, v in entry.items() if k not in ("tag", "queue", "priority")}
        )
        tag = entry.get("tag")
        submissions.append(
            Submission(
                process_id=str(body["process"]),
                inputs={k: decode_value(v) for k, v in inputs.items()},
                queue=entry.get("queue") or body.get("queue"),
                priority=int(entry.get("priority", body.get("priority", 5))),
                tags=[*([tag] if tag else []), *common_tags],
            )
        )
    jobs = services.jobs.submit_many(submissions, owner=user, batch=True)
    batch = services.jobs.get_batch(jobs[0].batch_id) if jobs[0].batch_id else None
    base = base_url(request)
    document = batch_document(batch, base) if batch else {}
    document["jobIDs"] = [job.id for job in jobs]
    return JSONResponse(
        document,
        status_code=201,
        headers={"Location": f"{base}/batches/{document.get('batchID', '')}"},
    )


@router.get("/batches/{batch_id}", summary="Batch counts per status")
def get_batch(batch_id: str, request: Request, user: str = Depends(current_user)) -> dict[str, Any]:
    batch = services_of(request).jobs.get_batch(batch_id, user=user)
    return batch_document(batch, base_url(request))


@router.delete("/batches/{batch_id}", summary="Cancel every unfinished job of a batch")
def cancel_batch(
    batch_id: str, request: Request, user: str = Depends(current_user)
) -> dict[str, Any]:
    batch = services_of(request).jobs.cancel_batch(batch_id, user=user)
    return batch_document(batch, base_url(request))


@router.post(
    "/batches/{batch_id}/retry",
    status_code=201,
    summary="Resubmit the failed and dismissed jobs of a batch (as a new batch)",
)
def retry_batch(batch_id: str, request: Request, user: str = Depends(current_user)) -> JSONResponse:
    services = services_of(request)
    jobs = services.jobs.retry_batch(batch_id, user=user)
    base = base_url(request)
    if not jobs:
        return JSONResponse(
            {"batchID": None, "jobIDs": [], "detail": "nothing to retry"}, status_code=200
        )
    batch = services.jobs.get_batch(jobs[0].batch_id or "")
    document = batch_document(batch, base)
    document["jobIDs"] = [job.id for job in jobs]
    return JSONResponse(document, status_code=201)

"""``POST /processes/{id}/execution`` and ``GET /jobs/{id}/results[/{output}]``.

Every execution creates a job that the executor runs like any other (work dir, queue
limits, cancel, logs, metrics, staged outputs). The execution mode follows the OGC 1.0
table (/req/core/process-execute-default-execution-mode, -auto-execution-mode):

=====================  ================  ==========================================
jobControlOptions      no ``Prefer``     ``Prefer: respond-async``
=====================  ================  ==========================================
sync-execute only      synchronous       synchronous
async-execute only     asynchronous      asynchronous
both                   synchronous       asynchronous
=====================  ================  ==========================================

``Prefer: wait=N`` bounds a synchronous wait to N seconds; with ``respond-async`` it asks
for a synchronous answer if the job ends within N seconds (RFC 7240). A synchronous
execution that outlasts its wait (``wait=N``, else the server's limit) is answered
asynchronously (201). ``Preference-Applied`` names the preferences honoured. A synchronous
answer carries ``Link: <…/jobs/{id}>; rel="monitor"``.

The request's ``response``, ``outputs`` and ``subscriber`` are kept on the job (its
``request`` column), so that ``GET /jobs/{id}/results`` answers as the request asked: raw
when it asked for ``"response": "raw"``, else a results document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from opendps.api.deps import base_url, current_user, services_of
from opendps.api.documents import process_description, status_info
from opendps.api.execution import ExecuteBody, decode_execute_body
from opendps.api.ogc.callbacks import check_subscriber
from opendps.api.ogc.inputs import decode_inputs, requested_outputs
from opendps.api.ogc.results import (
    NoSuchOutput,
    failure_response,
    render_results,
    stored_results,
    value_response,
)
from opendps.errors import NoSuchProcess, ResultNotReady
from opendps.models import Job, JobStatus
from opendps.net.safety import UrlPolicy
from opendps.service.jobs import Submission
from opendps.service.notifications import parse_notify

router = APIRouter(tags=["processes"])
DEFAULT_SYNC_WAIT = 300.0  # seconds a synchronous execution waits before answering 201


# -- negotiation ------------------------------------------------------------------------------


def prefer_tokens(request: Request) -> dict[str, str | None]:
    """``Prefer: respond-async, wait=10`` -> {"respond-async": None, "wait": "10"}."""
    tokens: dict[str, str | None] = {}
    for header in request.headers.getlist("prefer"):
        for token in header.split(","):
            key, _, value = token.strip().partition("=")
            if key.strip():
                tokens[key.strip().lower()] = value.strip().strip('"') or None
    return tokens


@dataclass(frozen=True)
class Negotiated:
    synchronous: bool  # wait for the job before answering
    wait: float  # seconds to wait (synchronous only)
    applied: list[str] = field(default_factory=list)  # honoured if answered synchronously
    applied_async: list[str] = field(default_factory=list)  # honoured if answered 201


def negotiate(control: list[str], tokens: dict[str, str | None], max_wait: float) -> Negotiated:
    sync_ok = "sync-execute" in control
    async_ok = "async-execute" in control or not sync_ok
    wants_async = "respond-async" in tokens
    wait: float | None = None
    try:
        wait = max(0.0, float(tokens["wait"])) if tokens.get("wait") else None
    except ValueError:
        wait = None
    wait_token = [f"wait={tokens['wait']}"] if wait is not None else []
    if sync_ok and not (async_ok and wants_async):
        limit = min(wait, max_wait) if wait is not None else max_wait
        return Negotiated(True, limit, wait_token, wait_token)
    if sync_ok and wait is not None:  # respond-async, wait=N: async only if it takes longer
        return Negotiated(True, min(wait, max_wait), wait_token, ["respond-async", *wait_token])
    return Negotiated(False, 0.0, [], ["respond-async"] if wants_async else [])


# -- execute ----------------------------------------------------------------------------------


@router.post(
    "/processes/{process_id}/execution", summary="Execute a process", operation_id="execute"
)
async def execute(process_id: str, request: Request, user: str = Depends(current_user)) -> Response:
    services = services_of(request)
    base = base_url(request)
    algorithm = await run_in_threadpool(services.algorithms.get, process_id)
    body = await decode_execute_body(request)
    description = process_description(algorithm, base)
    inputs, as_sent = decode_inputs(description["inputs"], body.raw_inputs)
    modes = requested_outputs(description["outputs"], body.outputs)
    subscriber = check_subscriber(body.subscriber, UrlPolicy.from_settings(services.settings))
    notify = parse_notify(body.notify, services.settings)
    max_wait = getattr(request.app.state, "ogc_sync_wait", DEFAULT_SYNC_WAIT)
    negotiated = negotiate(description["jobControlOptions"], prefer_tokens(request), max_wait)
    submission = Submission(
        process_id=algorithm.process_id,
        inputs=inputs,
        queue=body.queue,
        priority=body.priority,
        tags=body.tags,
        dedup=body.dedup,
        as_sent=as_sent if algorithm.builtin else None,
        algorithm=algorithm,
        request={
            "response": body.response,
            "outputs": modes if body.outputs else None,
            "subscriber": subscriber or None,
        },
    )
    job = await run_in_threadpool(lambda: services.jobs.submit(submission, owner=user))
    if not job.deduped and (notify is not None or subscriber):
        # Sent by the executor side's delivery loop (executors/delivery.py).
        await run_in_threadpool(
            lambda: services.jobs.subscribe(
                job.id, user, base_url=base, notify=notify, ogc_uris=subscriber or None
            )
        )
    if negotiated.synchronous:
        job = await run_in_threadpool(services.jobs.wait, job.id, user, negotiated.wait)
        if job.status.terminal:
            answer = await run_in_threadpool(
                synchronous_answer,
                services,
                job,
                base,
                user,
                body,
                modes,
                description["outputs"],
                request,
            )
            answer.headers.append(
                "Link", f'<{base}/jobs/{job.id}>; rel="monitor"; type="application/json"'
            )
            return _applied(answer, negotiated.applied)
    answer = JSONResponse(
        status_info(job, base),
        status_code=200 if job.deduped else 201,
        headers={"Location": f"{base}/jobs/{job.id}"},
    )
    return _applied(answer, negotiated.applied_async)


def _applied(answer: Response, preferences: list[str]) -> Response:
    if preferences:
        answer.headers["Preference-Applied"] = ", ".join(preferences)
    return answer


def _schemas(outputs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: (o.get("schema") or {}) for name, o in outputs.items() if isinstance(o, dict)}


def synchronous_answer(
    services: Any,
    job: Job,
    base: str,
    user: str,
    body: ExecuteBody,
    modes: dict[str, str],
    outputs: dict[str, Any],
    request: Request,
) -> Response:
    if job.status != JobStatus.SUCCESSFUL:
        return failure_response(job, base, request)
    return render_results(
        services,
        job,
        base,
        user,
        response=body.response or "raw",
        modes=modes,
        schemas=_schemas(outputs),
    )


# -- results ----------------------------------------------------------------------------------


def _output_schemas(services: Any, job: Job, base: str) -> dict[str, dict[str, Any]]:
    try:
        algorithm = services.algorithms.get_by_id(job.algorithm_id)
    except NoSuchProcess:  # undeployed since: no descriptions, the results stand alone
        return {}
    return _schemas(process_description(algorithm, base)["outputs"])


def results_answer(services: Any, job: Job, base: str, user: str, request: Request) -> Response:
    """``GET /jobs/{id}/results`` of any job."""
    if job.status == JobStatus.FAILED:
        return failure_response(job, base, request)
    if job.status == JobStatus.DISMISSED:
        raise ResultNotReady(f"job {job.id} was dismissed; it has no results")
    if not job.status.terminal:
        raise ResultNotReady(f"job {job.id} is {job.status.value}; results are not ready")
    record = job.request
    response = "raw" if record.get("response") == "raw" else "document"
    return render_results(
        services,
        job,
        base,
        user,
        response=response,
        modes=record.get("outputs"),
        schemas=_output_schemas(services, job, base),
    )


@router.get(
    "/jobs/{job_id}/results/{output_id}",
    summary="One output of a job, by value",
    operation_id="getResultOutput",
)
def job_output(
    job_id: str, output_id: str, request: Request, user: str = Depends(current_user)
) -> Response:
    services = services_of(request)
    base = base_url(request)
    job = services.jobs.get(job_id, user)
    if job.status == JobStatus.FAILED:
        return failure_response(job, base, request)
    if job.status != JobStatus.SUCCESSFUL:
        raise ResultNotReady(f"job {job.id} is {job.status.value}; results are not ready")
    results = stored_results(services, job, base, user)
    if output_id not in results:
        raise NoSuchOutput(
            f"job {job.id} has no output {output_id!r}; it has: {', '.join(results) or 'none'}"
        )
    schema = _output_schemas(services, job, base).get(output_id)
    return value_response(services, job, base, user, results[output_id], schema)

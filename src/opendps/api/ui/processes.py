"""Process pages: the list with build states, a register form, one process with a submit form."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)

from opendps.api.deps import services_of
from opendps.api.ui import batch_upload, register_form
from opendps.api.ui.render import check_same_origin, path_quote, render, ui_user
from opendps.errors import InvalidInput, OpenDPSError
from opendps.models import Algorithm
from opendps.registry.spec import AlgorithmSpec, InputSpec
from opendps.service.jobs import Submission
from opendps.service.packages import parse_package
from opendps.service.queries import ProcessQuery

router = APIRouter(prefix="/ui", include_in_schema=False)

INPUT_PREFIX = "input:"  # form field names of input values, apart from queue, tag, priority
MAX_PACKAGE = 1 << 20  # characters of a pasted registration
EXAMPLE_YAML = """\
algorithm_name: my_algorithm
algorithm_version: main
algorithm_description: What it does
repository_url: https://github.com/org/my_algorithm.git
run_command: my_algorithm/run.sh
build_command: my_algorithm/build.sh
queue: dps-worker-8gb
inputs:
  file:
    - name: input_file
      description: the granule to process
  positional:
    - name: threshold
      default: "0.5"
  config: []
"""


# -- list and register --------------------------------------------------------------------


def processes_page(
    request: Request,
    *,
    cursor: str | None = None,
    package: str = "",
    replace: bool = False,
    form: dict[str, Any] | None = None,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    services = services_of(request)
    query = ProcessQuery(limit=100, cursor=cursor)
    page = services.algorithms.list_processes(query, ui_user(request))
    values = form or register_form.blank_form(services.settings.default_queue)
    rows = register_form.input_rows(values)
    return render(
        request,
        "processes.html",
        {
            "page": page,
            "paged": cursor is not None,
            "package": package,
            "replace": replace,
            "example": EXAMPLE_YAML,
            "form": values,
            "fields": register_form.FIELDS,
            "input_rows": rows,
            "kinds": register_form.KINDS,
            "data_types": register_form.DATA_TYPES,
            "queues": services.settings.queues,
            "yaml": register_form.to_yaml(values),
            "from_form": form is not None,
            "error": error,
        },
        status=status,
    )


@router.get("/processes", response_class=HTMLResponse)
def process_list(request: Request) -> HTMLResponse:
    cursor = request.query_params.get("next") or None
    try:
        return processes_page(request, cursor=cursor)
    except InvalidInput as exc:  # a ?next= this server did not issue
        return processes_page(request, error=exc.message, status=400)


def register_package(request: Request, text: str, replace: bool) -> Algorithm:
    """Parse the pasted registration and register it as ``POST``/``PUT /processes`` do."""
    services = services_of(request)
    user = ui_user(request)
    if not text.strip():
        raise InvalidInput("paste the algorithm's registration (MAAP algorithm YAML) first")
    if len(text) > MAX_PACKAGE:
        raise InvalidInput(f"the registration is longer than {MAX_PACKAGE} characters")
    package = parse_package(text, "application/yaml", settings=services.settings)
    # Replacing someone else's algorithm is refused by the service (owner or admin only).
    return services.algorithms.register(
        package.spec,
        owner=user,
        package=package.body,
        package_type=package.media_type,
        replace=replace,
    )


@router.post("/register/yaml")
async def form_yaml(request: Request) -> Response:
    """The YAML the register form describes, for the live preview beside the form."""
    check_same_origin(request)
    form = await request.form()
    return PlainTextResponse(register_form.to_yaml(dict(form)))


@router.post("/processes")
async def register_process(request: Request) -> Response:
    check_same_origin(request)
    form = await request.form()
    values = {key: str(value) for key, value in form.items()}
    replace = form.get("replace") == "on"
    if values.get("mode") == "form":
        action = values.get("action", "register")
        if action == "more":  # without JavaScript: the same form with more input rows
            rows = min(int(values.get("input_rows") or 3) + 3, register_form.MAX_INPUT_ROWS)
            values["input_rows"] = str(rows)
        if action in ("more", "preview"):
            return await run_in_threadpool(processes_page, request, form=values, replace=replace)
        text = register_form.to_yaml(values)
    else:
        text = str(form.get("package") or "")
    try:
        algorithm = await run_in_threadpool(register_package, request, text, replace)
    except OpenDPSError as exc:
        if exc.status >= 500:
            raise
        return await run_in_threadpool(
            processes_page,
            request,
            package="" if values.get("mode") == "form" else text,
            form=values if values.get("mode") == "form" else None,
            replace=replace,
            error=exc.message,
            status=exc.status,
        )
    return RedirectResponse(f"/ui/processes/{path_quote(algorithm.process_id)}", status_code=303)


# -- one process and its submit form ------------------------------------------------------


def input_fields(algorithm: Algorithm, spec: AlgorithmSpec) -> list[dict[str, Any]]:
    """One form field per declared input, described from the spec or its OGC description."""
    described = (spec.ogc or {}).get("inputs") or {}
    fields = []
    for item in spec.inputs:
        ogc = described.get(item.name) or {}
        default = item.default
        fields.append(
            {
                "name": item.name,
                "field": INPUT_PREFIX + item.name,
                "kind": item.kind,
                "title": ogc.get("title") or item.name,
                "description": item.description or ogc.get("description") or "",
                "mandatory": item.mandatory,
                "default": "" if default is None else default,
                "has_default": default is not None,
                "data_type": item.data_type or "",
                "multiline": item.kind == "config" and not item.is_number,
            }
        )
    return fields


def process_page(
    request: Request,
    process_id: str,
    *,
    values: dict[str, str] | None = None,
    error: str | None = None,
    batch_error: str | None = None,
    table: str = "",
    status: int = 200,
) -> HTMLResponse:
    services = services_of(request)
    user = ui_user(request)
    algorithm = services.algorithms.get(process_id)
    spec = services.algorithms.spec_of(algorithm)
    settings = services.settings
    queue = spec.queue if spec.queue and settings.queue(spec.queue) else settings.default_queue
    values = {"queue": queue, "priority": "5", "tag": "", **(values or {})}
    same_name = ProcessQuery(name=algorithm.name, limit=100)
    versions = services.algorithms.list_processes(same_name, user).items
    return render(
        request,
        "process.html",
        {
            "algorithm": algorithm,
            "spec": spec,
            "fields": input_fields(algorithm, spec),
            "queues": settings.queues,
            "values": values,
            "versions": sorted(versions, key=lambda a: a.updated, reverse=True),
            "build_log": build_log_tail(services, algorithm.process_id),
            "csv_example": ",".join([*(i.name for i in spec.inputs), "tag"]),
            "batch_error": batch_error,
            "table": table,
            "error": error,
        },
        status=status,
    )


BUILD_LOG_SHOWN = 64 * 1024  # characters of the build log's end shown on the page


def build_log_tail(services: Any, process_id: str) -> dict[str, Any]:
    text = services.algorithms.build_log(process_id)
    return {"text": text[-BUILD_LOG_SHOWN:], "cut": len(text) > BUILD_LOG_SHOWN}


@router.get("/live/processes/{process_id:path}")
def live_process(process_id: str, request: Request) -> JSONResponse:
    """The build's state and log, for following a build without reloading."""
    services = services_of(request)
    ui_user(request)
    algorithm = services.algorithms.get(process_id)
    build = algorithm.build
    return JSONResponse(
        {
            "status": build.status.value if build else None,
            "commit": build.commit if build else None,
            "message": build.message if build else None,
            "done": build is None or build.status.value in ("ready", "failed"),
            "log": build_log_tail(services, algorithm.process_id)["text"],
        },
        headers={"Cache-Control": "no-store"},
    )


@router.get("/processes/{process_id:path}", response_class=HTMLResponse)
def process_detail(process_id: str, request: Request) -> HTMLResponse:
    return process_page(request, process_id)


def form_value(item: InputSpec, text: str) -> Any:
    """What a form field means: config inputs may be JSON (objects, arrays); the rest are
    strings, which the service converts by ``data_type`` and splits into URLs."""
    if item.kind == "config" and not item.is_number and text.lstrip()[:1] in ("{", "["):
        try:
            return json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            return text
    return text


def submission_of(spec: AlgorithmSpec, process_id: str, values: dict[str, str]) -> Submission:
    inputs = {}
    for item in spec.inputs:
        text = values.get(INPUT_PREFIX + item.name, "")
        if text.strip() != "":  # left empty: the default, or "missing required input"
            inputs[item.name] = form_value(item, text.strip())
    priority = values.get("priority") or 5  # checked by the service, as in every dialect
    tag = values.get("tag", "").strip()
    return Submission(
        process_id=process_id,
        inputs=inputs,
        queue=values.get("queue") or None,
        priority=priority,
        tags=[tag] if tag else [],
    )


@router.post("/processes/{process_id}/batch")
async def submit_batch(process_id: str, request: Request) -> Response:
    """A CSV table (a file or pasted text) as one batch: one job per row."""
    check_same_origin(request)
    services = services_of(request)
    form = await request.form()
    upload = form.get("file")
    text = ""
    if upload is not None and not isinstance(upload, str):
        data = await upload.read(batch_upload.MAX_BYTES + 1)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text, bad_encoding = "", True
        else:
            bad_encoding = False
    else:
        bad_encoding = False
    if not text.strip():
        text = str(form.get("table") or "")
    shared = {key: str(form.get(key) or "") for key in ("queue", "tag", "priority")}

    def submit() -> str:
        user = ui_user(request)
        if bad_encoding:
            raise InvalidInput("the CSV file is not UTF-8 text")
        algorithm = services.algorithms.get(process_id)
        spec = services.algorithms.spec_of(algorithm)
        try:
            priority = int(shared["priority"] or 5)
        except ValueError:
            raise InvalidInput(f"priority must be a whole number 0..9; got {shared['priority']!r}")
        submissions = batch_upload.parse_table(
            text,
            spec,
            algorithm.process_id,
            queue=shared["queue"] or None,
            tag=shared["tag"].strip(),
            priority=priority,
        )
        return services.batches.submit(submissions, user=user).batch.id

    try:
        batch_id = await run_in_threadpool(submit)
    except OpenDPSError as exc:
        if exc.status >= 500 or exc.status in (401, 404):
            raise
        shown = text if len(text) <= 256 * 1024 else ""
        return await run_in_threadpool(
            process_page,
            request,
            process_id,
            batch_error=exc.message,
            table=shown,
            status=exc.status,
        )
    return RedirectResponse(f"/ui/batches/{batch_id}", status_code=303)


@router.post("/processes/{process_id:path}")
async def submit_job(process_id: str, request: Request) -> Response:
    check_same_origin(request)
    services = services_of(request)
    form = await request.form()
    values = {key: str(value) for key, value in form.items()}

    def submit() -> str:
        user = ui_user(request)
        algorithm = services.algorithms.get(process_id)
        spec = services.algorithms.spec_of(algorithm)
        submission = submission_of(spec, algorithm.process_id, values)
        return services.jobs.submit(submission, owner=user).id

    try:
        job_id = await run_in_threadpool(submit)
    except OpenDPSError as exc:
        if exc.status >= 500 or exc.status in (401, 404):
            raise
        return await run_in_threadpool(
            process_page, request, process_id, values=values, error=exc.message, status=exc.status
        )
    return RedirectResponse(f"/ui/jobs/{job_id}?done=submitted", status_code=303)

"""MAAP-shaped documents rendered from domain records (reference §3, §6)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from opendps.models import Algorithm, Build, Job, JobStatus
from opendps.net.urls import redact
from opendps.registry.spec import AlgorithmSpec, InputSpec
from opendps.service.context import Services

_DEPLOY_STATUS = {
    "queued": "accepted",
    "building": "running",
    "ready": "successful",
    "failed": "failed",
}


def iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _link(href: str, rel: str, title: str, type_: str = "application/json") -> dict[str, str]:
    return {"href": href, "rel": rel, "type": type_, "hreflang": "en", "title": title}


# -- processes ------------------------------------------------------------------------------


def input_type(item: InputSpec) -> str:
    if item.kind == "file":
        return "file"
    return (item.data_type or "text").lower()


def process_summary(algorithm: Algorithm, base: str) -> dict[str, Any]:
    spec = AlgorithmSpec.model_validate(algorithm.spec)
    ogc = spec.ogc or {}
    href = f"{base}/api/ogc/processes/{algorithm.id}"
    build = algorithm.build
    return {
        "title": ogc.get("title") or spec.name,
        "description": spec.description,
        "keywords": ogc.get("keywords", []),
        "metadata": [],
        "processID": algorithm.id,
        "id": algorithm.name,
        "version": algorithm.version,
        "process_name": algorithm.process_id,
        "jobControlOptions": ["async-execute", "dismiss"],
        "author": algorithm.owner,
        "deployedBy": algorithm.owner,
        "lastModifiedTime": iso(algorithm.updated),
        "cwlLink": f"{base}/processes/{quote(algorithm.process_id)}/package",
        "status": "deployed"
        if build and build.status.value == "ready"
        else (f"build {build.status.value}" if build else "deployed"),
        "links": [_link(href, "self", "OGC Process Description")],
    }


def process_description(algorithm: Algorithm, base: str) -> dict[str, Any]:
    spec = AlgorithmSpec.model_validate(algorithm.spec)
    build = algorithm.build
    href = f"{base}/api/ogc/processes/{algorithm.id}"
    inputs: dict[str, Any] = {}
    for item in spec.inputs:
        entry: dict[str, Any] = {
            "name": item.name,
            "from": "submitter",
            "type": input_type(item),
            "destination": {"file": "localize", "positional": "positional", "config": "context"}[
                item.kind
            ],
            "description": item.description,
            "required": item.mandatory,
        }
        if item.default is not None:
            entry["default"] = item.default
        inputs[item.name] = entry
    return {
        **process_summary(algorithm, base),
        "githubUrl": redact(spec.repository_url),
        "gitCommitHash": build.commit if build else None,
        "ramMin": None,
        "coresMin": None,
        "baseCommand": spec.run_command,
        "queue": spec.queue,
        "build": build_document(build, algorithm, base) if build else None,
        "inputs": inputs,
        "outputs": {"output": {"title": "staged outputs", "type": "directory"}},
        "links": [
            _link(href, "self", "OGC Process Description"),
            _link(f"{href}/package", "service-desc", "Process package"),
            _link(f"{href}/execution", "http://www.opengis.net/def/rel/ogc/1.0/execute", "Execute"),
        ],
    }


def build_document(build: Build, algorithm: Algorithm, base: str) -> dict[str, Any]:
    return {
        "deploymentJobID": build.id,
        "status": _DEPLOY_STATUS[build.status.value],
        "buildStatus": build.status.value,
        "commit": build.commit,
        "message": build.message,
        "container": build.container,
        "created": iso(build.created),
        "log": f"{base}/processes/{quote(algorithm.process_id)}/build/log",
    }


def deployment_status(build: Build, algorithm: Algorithm | None, base: str) -> dict[str, Any]:
    """``GET /api/ogc/deploymentJobs/{id}``: a deployment is a build here."""
    doc: dict[str, Any] = {
        "created": iso(build.created),
        "started": iso(build.started),
        "finished": iso(build.finished),
        "status": _DEPLOY_STATUS[build.status.value],
        "message": build.message,
        "pipeline": {"executionVenue": "opendps", "pipelineId": build.id},
        "links": _link(
            f"{base}/api/ogc/deploymentJobs/{build.id}", "self", "Deploying process status link"
        ),
    }
    if algorithm is not None:
        log = f"{base}/processes/{quote(algorithm.process_id)}/build/log"
        doc["pipeline"]["processPipelineLink"] = _link(log, "monitor", "Build log", "text/plain")
        doc["cwl"] = _link(
            f"{base}/processes/{quote(algorithm.process_id)}/package",
            "service-desc",
            "Process package",
            "application/yaml",
        )
        doc["id"] = algorithm.name
        doc["version"] = algorithm.version
        if build.status.value == "ready":
            doc["processLocation"] = _link(
                f"{base}/api/ogc/processes/{algorithm.id}", "service-doc", "Process location"
            )
    return doc


def deploy_answer(algorithm: Algorithm, base: str) -> dict[str, Any]:
    """``POST /api/ogc/processes`` (202): the process and its deployment (build)."""
    summary = process_summary(algorithm, base)
    build = algorithm.build
    build_id = build.id if build else None
    monitor = f"{base}/api/ogc/deploymentJobs/{build_id}"
    return {
        **{
            k: summary[k]
            for k in (
                "title",
                "description",
                "keywords",
                "metadata",
                "id",
                "version",
                "processID",
                "jobControlOptions",
            )
        },
        "deploymentJobID": build_id,
        "status": _DEPLOY_STATUS[build.status.value] if build else "successful",
        "created": iso(algorithm.updated),
        "links": [
            _link(monitor, "monitor", "Deploying process status link"),
            _link(f"{base}/api/ogc/processes/{algorithm.id}", "self", "Process"),
        ],
        "processPipelineLink": _link(
            f"{base}/processes/{quote(algorithm.process_id)}/build/log",
            "monitor",
            "Link to the build log",
            "text/plain",
        ),
    }


# -- jobs -----------------------------------------------------------------------------------


def job_type(job: Job) -> str:
    return f"job-{job.process_id}"


def job_minimal(job: Job) -> dict[str, Any]:
    return {
        "jobID": job.id,
        "processID": job.algorithm_id,
        "type": "process",
        "status": job.status.value,
    }


def job_details(job: Job, base: str) -> dict[str, Any]:
    """Everything ``getJobDetails=true`` / ``fields=`` can select (reference §3.4)."""
    href = f"{base}/api/ogc/jobs/{job.id}"
    return {
        "title": job.algorithm,
        "description": None,
        "keywords": [],
        "request": None,
        "message": job.message,
        "reason": job.reason.value if job.reason else None,
        "phase": job.phase.value if job.phase else None,
        "created": iso(job.created),
        "started": iso(job.started),
        "finished": iso(job.finished),
        "updated": iso(job.updated),
        "progress": job.progress,
        "tags": job.tags,
        "job_queue": job.queue,
        "priority": job.priority,
        "process_name": job.process_id,
        "job_type": job_type(job),
        "products": job.output_url if job.status.terminal else None,
        "inputs": job.inputs,
        "links": [
            _link(href, "self", "Job status"),
            _link(
                f"{href}/results", "http://www.opengis.net/def/rel/ogc/1.0/results", "Job results"
            ),
            _link(f"{href}/metrics", "metrics", "Job metrics"),
            _link(f"{base}/jobs/{job.id}/logs", "logs", "Job logs (stdout, stderr)"),
        ],
    }


DETAIL_FIELDS = (
    "title",
    "description",
    "keywords",
    "request",
    "message",
    "reason",
    "phase",
    "created",
    "started",
    "finished",
    "updated",
    "progress",
    "tags",
    "job_queue",
    "priority",
    "process_name",
    "job_type",
    "products",
    "inputs",
    "links",
)


def submitted(job: Job, base: str) -> dict[str, Any]:
    """``POST …/execution`` (202)."""
    return {
        "title": job.algorithm,
        "description": None,
        "keywords": [],
        "metadata": [],
        "jobID": job.id,
        "processID": job.algorithm_id,
        "process_name": job.process_id,
        "type": "process",
        "request": None,
        "status": job.status.value,
        "message": "an identical job exists; this is it" if job.deduped else None,
        "deduped": job.deduped,
        "queue": job.queue,
        "tags": job.tags,
        "created": iso(job.created),
        "updated": None,
        "links": [
            _link(f"{base}/api/ogc/processes/{job.algorithm_id}/execution", "self", "Execute"),
            _link(f"{base}/api/ogc/jobs/{job.id}", "monitor", "Job status"),
        ],
    }


def staged_links(services: Services, job: Job, base: str, user: str) -> list[dict[str, str]]:
    """Links of a terminal job's staged folder: storage URL, listing, then each file."""
    listing = services.jobs.outputs(job.id, user=user)
    links = [
        {"href": listing["location"]},
        {
            "href": f"{base}/jobs/{job.id}/outputs",
            "rel": "outputs",
            "type": "application/json",
            "title": "staged files",
        },
    ]
    for item in listing["outputs"]:
        links.append(
            {
                "href": f"{base}/jobs/{job.id}/outputs/{quote(item['path'])}",
                "rel": "item",
                "title": item["path"],
                "url": item["url"],
            }
        )
    return links


def results(services: Services, job: Job, base: str, user: str) -> dict[str, Any]:
    """MAAP's ``additionalPropN`` results; ``{}`` while the job has not finished."""
    if not job.status.terminal or (job.status == JobStatus.DISMISSED and job.started is None):
        return {}
    doc: dict[str, Any] = {
        "additionalProp1": {
            "id": f"{job.id}-output",
            "links": staged_links(services, job, base, user),
        },
    }
    if job.results:
        doc["results"] = job.results
    if job.status == JobStatus.FAILED:
        doc["detail"] = job.message or "the job failed"
    return doc


def _gib(value: Any) -> str | None:
    return f"{value / 1024**3:.2f} GiB" if isinstance(value, int | float) else None


def _architecture(platform: str) -> str | None:
    for arch in ("x86_64", "aarch64", "arm64", "ppc64le", "s390x", "i686"):
        if arch in platform:
            return arch
    return None


def metrics(job: Job) -> dict[str, Any]:
    """MAAP's metric names (reference §3.6) filled from this job's measurements, then the
    native measurements under their own names."""
    m = job.metrics or {}
    host = m.get("host") or {}
    cpu = None
    if m.get("cpu_user_seconds") is not None:
        cpu = int(((m.get("cpu_user_seconds") or 0) + (m.get("cpu_system_seconds") or 0)) * 1e9)
    duration = m.get("run_wall_seconds")
    if duration is None and job.started and job.finished:
        duration = (job.finished - job.started).total_seconds()
    read = (m.get("localize") or {}).get("bytes")
    written = (m.get("stage") or {}).get("bytes")
    maap = {
        "machine_type": host.get("hostname"),
        "architecture": _architecture(host.get("platform") or ""),
        "machine_memory_size": _gib(host.get("memory_total")),
        "directory_size": m.get("work_dir_bytes"),
        "operating_system": host.get("platform"),
        "job_start_time": iso(job.started),
        "job_end_time": iso(job.finished),
        "job_duration_seconds": duration,
        "cpu_usage": cpu,
        "cache_usage": None,
        "mem_usage": m.get("peak_memory_bytes"),
        "max_mem_usage": m.get("peak_memory_bytes"),
        "swap_usage": None,
        "read_io_stats": read,
        "write_io_stats": written,
        "sync_io_stats": None,
        "async_io_stats": None,
        "total_io_stats": (read or 0) + (written or 0)
        if read is not None or written is not None
        else None,
    }
    native = {k: v for k, v in m.items() if k not in maap}
    return {
        **maap,
        "status": job.status.value,
        "queue": job.queue,
        "queued_time": iso(job.created),
        **native,
    }

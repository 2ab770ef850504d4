"""OGC API - Processes documents rendered from domain records."""

from __future__ import annotations

from typing import Any

from opendps.models import Algorithm, Job, JobStatus
from opendps.net.urls import redact
from opendps.registry.spec import AlgorithmSpec
from opendps.service.input_schema import described_inputs


def iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def build_info(algorithm: Algorithm, base: str) -> dict[str, Any] | None:
    build = algorithm.build
    if build is None:
        return None
    return {
        "status": build.status.value,
        "commit": build.commit,
        "message": build.message,
        # Where jobs run (DESIGN §15): "podman <image>" or "host (<why>)".
        "container": build.container,
        "image": build.image,
        "started": iso(build.started),
        "finished": iso(build.finished),
        "log": f"{base}/processes/{algorithm.process_id}/build/log",
    }


def process_summary(algorithm: Algorithm, base: str) -> dict[str, Any]:
    spec = AlgorithmSpec.model_validate(algorithm.spec)
    ogc = spec.ogc or {}
    control = ogc.get("jobControlOptions") or (
        ["sync-execute", "async-execute", "dismiss"]
        if algorithm.builtin
        else ["async-execute", "dismiss"]
    )
    href = f"{base}/processes/{algorithm.process_id}"
    return {
        "id": algorithm.process_id,
        "title": ogc.get("title") or spec.name,
        "description": spec.description,
        "version": spec.version,
        "keywords": ogc.get("keywords", []),
        "jobControlOptions": control,
        "outputTransmission": ogc.get("outputTransmission", ["value", "reference"]),
        "mutable": not algorithm.builtin,
        "owner": algorithm.owner,
        "created": iso(algorithm.created),
        "updated": iso(algorithm.updated),
        "build": build_info(algorithm, base),
        "links": [
            {
                "href": href,
                "rel": "self",
                "type": "application/json",
                "title": "process description",
            },
            {
                "href": f"{href}/execution",
                "rel": "http://www.opengis.net/def/rel/ogc/1.0/execute",
                "type": "application/json",
                "title": "execute",
            },
        ],
    }


def process_description(algorithm: Algorithm, base: str) -> dict[str, Any]:
    spec = AlgorithmSpec.model_validate(algorithm.spec)
    ogc = spec.ogc or {}
    inputs = described_inputs(spec)
    outputs = ogc.get("outputs") or {
        "output": {
            "title": "staged outputs",
            "description": "the files the job wrote to output/, staged to storage",
            "schema": {"type": "string", "format": "uri"},
        }
    }
    return {
        **process_summary(algorithm, base),
        "inputs": inputs,
        "outputs": outputs,
        "repository_url": redact(spec.repository_url),
        "run_command": spec.run_command,
        "queue": spec.queue,
    }


def status_info(job: Job, base: str) -> dict[str, Any]:
    href = f"{base}/jobs/{job.id}"
    links = [
        {"href": href, "rel": "self", "type": "application/json", "title": "status"},
        {"href": f"{href}/logs", "rel": "logs", "type": "application/json", "title": "logs"},
        {"href": f"{href}/metrics", "rel": "metrics", "type": "application/json"},
        {"href": f"{href}/outputs", "rel": "outputs", "type": "application/json"},
        {
            "href": f"{base}/processes/{job.process_id}",
            "rel": "up",
            "type": "application/json",
            "title": "process",
        },
    ]
    if job.status == JobStatus.SUCCESSFUL:
        links.append(
            {
                "href": f"{href}/results",
                "rel": "http://www.opengis.net/def/rel/ogc/1.0/results",
                "type": "application/json",
                "title": "results",
            }
        )
    if job.status == JobStatus.FAILED:
        links.append(
            {
                "href": f"{href}/results",
                "rel": "http://www.opengis.net/def/rel/ogc/1.0/exceptions",
                "type": "application/json",
                "title": "exceptions",
            }
        )
    progress = job.progress if job.progress is not None else (100 if job.status.terminal else 0)
    info = {
        "jobID": job.id,
        "processID": job.process_id,
        "type": "process",
        "status": job.status.value,
        "message": job.message or "",
        "reason": job.reason.value if job.reason else None,
        "phase": job.phase.value if job.phase else None,
        "created": iso(job.created),
        "started": iso(job.started),
        "finished": iso(job.finished),
        "updated": iso(job.updated),
        "progress": progress,
        "queue": job.queue,
        "priority": job.priority,
        "tags": job.tags,
        "batch": job.batch_id,
        "owner": job.owner,
        "attempts": job.attempts,
        "exitCode": job.exit_code,
        "warnings": job.warnings,
        "deduped": job.deduped,
        "links": links,
    }
    # statusInfo types its timestamps as date-time strings: leave out those not reached yet.
    for key in ("started", "finished"):
        if info[key] is None:
            del info[key]
    return info

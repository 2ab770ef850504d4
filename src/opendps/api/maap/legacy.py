"""maap-py 4.x documents: WPS process descriptions, ``<metrics>`` and the HySDS-shaped
entries of ``GET /api/dps/job/list`` (reference §6)."""

from __future__ import annotations

from typing import Any

from opendps.api.maap import xml
from opendps.api.maap.documents import input_type, iso, job_type, metrics, staged_links
from opendps.models import Algorithm, Job, JobStatus
from opendps.registry.spec import AlgorithmSpec
from opendps.service.context import Services
from opendps.service.statuses import HYSDS, WPS


def wps_process(algorithm: Algorithm) -> xml.ProcessInfo:
    spec = AlgorithmSpec.model_validate(algorithm.spec)
    return xml.ProcessInfo(
        identifier=f"job-{algorithm.process_id}",
        title=spec.description or spec.name,
        description=spec.description,
        inputs=[(i.name, input_type(i), i.default) for i in spec.inputs],
    )


def legacy_metrics(job: Job) -> dict[str, Any]:
    """The 18 MAAP metric names only, for the ``<metrics>`` XML."""
    values = metrics(job)
    names = (
        "machine_type",
        "architecture",
        "machine_memory_size",
        "directory_size",
        "operating_system",
        "job_start_time",
        "job_end_time",
        "job_duration_seconds",
        "cpu_usage",
        "cache_usage",
        "mem_usage",
        "max_mem_usage",
        "swap_usage",
        "read_io_stats",
        "write_io_stats",
        "sync_io_stats",
        "async_io_stats",
        "total_io_stats",
    )
    return {name: values[name] for name in names}


def legacy_job(services: Services, job: Job, base: str, user: str, details: bool) -> dict[str, Any]:
    """One entry of ``GET /api/dps/job/list`` (HySDS / Mozart shape, reference §6.4)."""
    if not details:
        return {"id": job.id, "tags": job.tags, "status": HYSDS[job.status]}
    staged: list[dict[str, Any]] = []
    if job.status.terminal and job.started is not None:
        links = staged_links(services, job, base, user)
        folder = links[0]["href"]
        marker = folder.find("/dps_output/")
        staged.append(
            {
                "id": f"{job.id}-output",
                "urls": [link["href"] for link in links],
                "product_folder_path": "my-private-bucket" + folder[marker:]
                if marker >= 0
                else folder,
            }
        )
    return {
        job.id: {
            "status": HYSDS[job.status],
            "wps_status": WPS[job.status],
            "ogc_status": job.status.value,
            "type": job_type(job),
            "tags": job.tags,
            "priority": job.priority,
            "username": job.owner,
            "job": {
                "job_id": job.id,
                "job_info": {
                    "id": job.id,
                    "time_queued": iso(job.created),
                    "time_start": iso(job.started),
                    "time_end": iso(job.finished),
                    "job_queue": job.queue,
                    "duration": (job.finished - job.started).total_seconds()
                    if job.started and job.finished
                    else None,
                    "job_payload": {"payload_task_id": job.id, "job_type": job_type(job)},
                    "metrics": {"products_staged": staged},
                },
                "params": {
                    "job_specification": {
                        "params": [{"name": k, "value": v} for k, v in job.inputs.items()]
                    }
                },
            },
            "traceback": job.message if job.status == JobStatus.FAILED else None,
        }
    }

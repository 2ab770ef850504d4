"""``GET /metrics``: Prometheus text format (``prometheus_client``).

The numbers come from the store at scrape time (store/stats.py), so they are the same on
every API replica and count the work of every worker; there is no per-process state to
merge (which is what makes it safe across processes and machines).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from opendps.api.deps import services_of
from opendps.models import JobStatus
from opendps.store.stats import StatsStore

router = APIRouter(tags=["service"])
QUEUE_WAIT_BUCKETS = (0.1, 0.5, 1, 5, 30, 60, 300, 1800, 3600, 6 * 3600)
RUN_SECONDS_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 24 * 3600)


class StoreCollector:
    def __init__(self, request: Request) -> None:
        self.request = request
        self.services = services_of(request)

    def collect(self) -> Iterator[Any]:
        stats = StatsStore(self.services.db)
        queues = [q.name for q in self.services.settings.queues]
        by_status = stats.jobs_by_queue_and_status()
        jobs = GaugeMetricFamily("dps_jobs", "Jobs by queue and status", labels=["queue", "status"])
        for queue in sorted({q for q, _ in by_status} | set(queues)):
            for status in JobStatus:
                jobs.add_metric([queue, status.value], by_status.get((queue, status.value), 0))
        yield jobs
        depth = GaugeMetricFamily("dps_queue_depth", "Accepted jobs waiting", labels=["queue"])
        running = GaugeMetricFamily("dps_queue_running", "Running jobs", labels=["queue"])
        for queue in queues:
            depth.add_metric([queue], by_status.get((queue, "accepted"), 0))
            running.add_metric([queue], by_status.get((queue, "running"), 0))
        yield depth
        yield running
        oldest = GaugeMetricFamily(
            "dps_queue_oldest_wait_seconds", "Age of the oldest waiting job", labels=["queue"]
        )
        now = datetime.now(UTC)
        waiting = stats.oldest_waiting()
        for queue in queues:
            since = waiting.get(queue)
            oldest.add_metric([queue], (now - since).total_seconds() if since else 0.0)
        yield oldest
        claims = CounterMetricFamily(
            "dps_job_claims", "Claims of jobs by workers (attempts)", labels=["queue"]
        )
        for queue, count in sorted(stats.attempts_by_queue().items()):
            claims.add_metric([queue], count)
        yield claims
        run_time = HistogramMetricFamily(
            "dps_job_run_seconds", "Run time of ended jobs (claim to end)", labels=["queue"]
        )
        for queue, (counts, count, total) in sorted(
            stats.run_time_buckets(RUN_SECONDS_BUCKETS).items()
        ):
            buckets = [(str(b), c) for b, c in zip(RUN_SECONDS_BUCKETS, counts, strict=True)]
            run_time.add_metric([queue], [*buckets, ("+Inf", count)], total)
        yield run_time
        wait = HistogramMetricFamily(
            "dps_job_queue_wait_seconds",
            "Dispatch latency: submit to claim, of claimed jobs",
            labels=["queue"],
        )
        for queue, (counts, count, total) in sorted(
            stats.queue_wait_buckets(QUEUE_WAIT_BUCKETS).items()
        ):
            buckets = [(str(b), c) for b, c in zip(QUEUE_WAIT_BUCKETS, counts, strict=True)]
            wait.add_metric([queue], [*buckets, ("+Inf", count)], total)
        yield wait
        workers = GaugeMetricFamily(
            "dps_workers_alive", "Workers serving the queue", labels=["queue"]
        )
        for queue in queues:
            workers.add_metric([queue], len(self.request.app.state.queue_workers(queue)))
        yield workers
        builds = GaugeMetricFamily("dps_builds", "Current builds by state", labels=["status"])
        by_build = stats.builds_by_status()
        for status in ("queued", "building", "ready", "failed"):
            builds.add_metric([status], by_build.get(status, 0))
        yield builds


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(request))  # type: ignore[arg-type]
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

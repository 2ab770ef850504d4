"""Liveness of scale-out workers: heartbeats in the store, recovery of lost workers' jobs.

Workers on other machines cannot be checked by pid, so a worker is alive while its row in
the store is fresher than ``heartbeat_timeout``. Any process may run
:func:`recover_lost_workers` (the API server and every worker do); every change it makes
is fenced by the job's attempt number, so two recoverers, or a lost worker that comes
back, never overwrite each other or a re-run (DESIGN §13).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from opendps.errors import InvalidTransition, NoSuchJob
from opendps.models import Job, JobStatus, Phase, Reason

if TYPE_CHECKING:
    from opendps.service.context import Services

log = logging.getLogger(__name__)


def recover_lost_job(services: Services, job_id: str, attempt: int, message: str) -> Job | None:
    """A running job's worker is gone: dismiss (cancel requested), re-queue (below the
    attempt cap) or fail it with ``worker_lost`` — only if ``attempt`` is still current."""
    store = services.job_store
    try:
        job = store.get_job(job_id)
        if job.status != JobStatus.RUNNING or job.attempts != attempt:
            return None
        cap = services.settings.max_attempts
        if job.cancel_requested:
            return store.transition(
                job_id,
                JobStatus.DISMISSED,
                allowed_from=[JobStatus.RUNNING],
                reason=Reason.CANCELLED,
                phase=Phase.RUN,
                message=f"cancelled ({message})",
                attempt=attempt,
            )
        if attempt < cap:
            requeued = store.requeue(
                job_id, f"{message}; re-queued (attempt {attempt} of {cap})", attempt=attempt
            )
            services.worker_store.clear_enqueued(job_id)  # the sweeper publishes it again
            log.warning(
                "job %s: %s; re-queued",
                job_id,
                message,
                extra={"action": "job_requeued", "job_id": job_id},
            )
            return requeued
        log.warning(
            "job %s: %s; failed", job_id, message, extra={"action": "job_lost", "job_id": job_id}
        )
        return store.transition(
            job_id,
            JobStatus.FAILED,
            allowed_from=[JobStatus.RUNNING],
            reason=Reason.WORKER_LOST,
            phase=Phase.RUN,
            message=f"{message}; gave up after {attempt} attempts",
            attempt=attempt,
        )
    except (InvalidTransition, NoSuchJob):
        return None  # it ended, or moved on to another attempt, meanwhile


def recover_lost_workers(services: Services) -> list[Job]:
    """Recover the jobs of every worker silent for ``heartbeat_timeout``, then forget the
    worker (a dead worker leaves ``GET /queues`` once its jobs are recovered). Also jobs
    whose claiming worker never heart-beat at all."""
    timeout = services.settings.heartbeat_timeout
    recovered: list[Job] = []
    workers = services.worker_store
    for worker in workers.stale_workers(timeout):
        silent = f"worker {worker.id} on {worker.host} sent no heartbeat for {timeout:g} s"
        for job_id, attempt in workers.running_attempts_of(worker.id):
            job = recover_lost_job(services, job_id, attempt.number, silent)
            if job is not None:
                recovered.append(job)
        if not workers.running_attempts_of(worker.id):
            workers.remove(worker.id)
    for job_id in workers.orphaned_running(grace=timeout):
        try:
            job = services.job_store.get_job(job_id)
        except NoSuchJob:
            continue
        result = recover_lost_job(
            services, job_id, job.attempts, "its worker is not registered (no heartbeat)"
        )
        if result is not None:
            recovered.append(result)
    return recovered

"""Crash recovery: running jobs whose supervisor is gone (DESIGN §9 "Crashes and restarts")."""

from __future__ import annotations

import logging
import os
import signal
from typing import TYPE_CHECKING

import psutil

from opendps.errors import InvalidTransition
from opendps.models import Attempt, Job, JobStatus, Phase, Reason

if TYPE_CHECKING:
    from opendps.service.context import Services

log = logging.getLogger(__name__)
RUN_PID_FILE = "_run.pid"  # "<pid> <create_time>" of the run command, written by the runner


def process_alive(pid: int | None, started: float | None) -> bool:
    """True if ``pid`` runs and is the same process (its start time matches)."""
    if not pid:
        return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(process.create_time() - started) < 0.5
    except psutil.Error:
        return False


def worker_id() -> str:
    """``host:pid:start`` of this process; recovery uses it to tell a live executor."""
    me = psutil.Process()
    return f"{os.uname().nodename}:{me.pid}:{me.create_time():.2f}"


def worker_alive(worker: str) -> bool:
    try:
        _host, pid, started = worker.rsplit(":", 2)
        return process_alive(int(pid), float(started))
    except ValueError:
        return False


def kill_orphaned_run(services: Services, job: Job) -> None:
    """The run command may outlive a killed supervisor: kill its group before a re-run,
    so no two copies of a job run at once."""
    from opendps.runner.container import remove_job_container
    from opendps.service.jobs import work_dir_of

    remove_job_container(services.settings, job.id)  # conmon keeps a container running
    pid_file = work_dir_of(services.settings, job) / RUN_PID_FILE
    try:
        pid_text, started_text = pid_file.read_text().split()
        pid, started = int(pid_text), float(started_text)
    except (OSError, ValueError):
        return
    if process_alive(pid, started):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def recover_job(services: Services, job: Job, message: str) -> Job | None:
    """A running job lost its supervisor: dismiss, re-queue or fail it."""
    kill_orphaned_run(services, job)
    store = services.job_store
    try:
        if job.cancel_requested:
            return store.transition(
                job.id,
                JobStatus.DISMISSED,
                allowed_from=[JobStatus.RUNNING],
                reason=Reason.CANCELLED,
                phase=Phase.RUN,
                message="cancelled (its supervisor was gone)",
            )
        if job.attempts < services.settings.max_attempts:
            log.warning("job %s: %s; re-queued", job.id, message, extra={"action": "job_requeued"})
            return store.requeue(
                job.id,
                f"{message}; re-queued (attempt {job.attempts} of "
                f"{services.settings.max_attempts})",
            )
        log.warning("job %s: %s; failed", job.id, message, extra={"action": "job_lost"})
        return store.transition(
            job.id,
            JobStatus.FAILED,
            allowed_from=[JobStatus.RUNNING],
            reason=Reason.WORKER_LOST,
            phase=Phase.RUN,
            message=f"{message}; gave up after {job.attempts} attempts",
        )
    except InvalidTransition:
        return None  # it ended meanwhile


def is_orphaned(attempt: Attempt | None) -> bool:
    if attempt is None:
        return True
    if attempt.pid is None:  # claimed, supervisor not started yet: orphaned if the claimer died
        return not worker_alive(attempt.worker)
    return not process_alive(attempt.pid, attempt.pid_started)


def recover_host(services: Services, host: str) -> tuple[list[Job], list[Job]]:
    """Check every running job of this host: answers (adopted, recovered)."""
    adopted, recovered = [], []
    for job, attempt in services.job_store.running_on_host(host):
        if is_orphaned(attempt):
            result = recover_job(services, job, "its supervisor process was gone")
            if result is not None:
                recovered.append(result)
        else:
            adopted.append(job)
    return adopted, recovered

"""Crash recovery: running jobs whose supervisor is gone (DESIGN §9 "Crashes and restarts",
§12 "Exactly one run").

Who is who:

- ``node_id()`` names the machine and PID namespace (boot id + pid namespace inode, plus the
  hostname for people). A pid recorded in the store means something only on its node, so
  recovery looks only at attempts of its own node — two containers with one hostname are
  two nodes.
- ``worker_id()`` is unique per process (a random id made once, plus host and pid for
  people): two workers with one hostname never take each other for themselves.

Every change a recovery makes is fenced by the attempt number it saw (JobStore
``transition(..., attempt=n)`` / ``requeue(..., attempt=n)``), so it never ends a later
attempt that another worker already started.
"""

from __future__ import annotations

import functools
import logging
import os
import uuid
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from opendps.errors import InvalidTransition
from opendps.models import Attempt, Job, JobStatus, Phase, Reason
from opendps.store.db import utcnow

if TYPE_CHECKING:
    from opendps.service.context import Services

log = logging.getLogger(__name__)


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


@functools.cache
def node_id() -> str:
    """``host/boot-id/pid-namespace``: where pids in the store can be checked."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        boot = "noboot"
    try:
        pidns = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        pidns = "0"
    return f"{os.uname().nodename}/{boot}/{pidns}"


_WORKER_IDS: dict[int, str] = {}


def worker_id() -> str:
    """``host:pid:random``, made once per process (a fork gets its own)."""
    pid = os.getpid()
    if pid not in _WORKER_IDS:
        _WORKER_IDS[pid] = f"{os.uname().nodename}:{pid}:{uuid.uuid4().hex[:12]}"
    return _WORKER_IDS[pid]


def worker_alive(worker: str) -> bool:
    """Is the worker (a process of this node) still running? Only its own pid says so."""
    try:
        _host, pid, _tag = worker.rsplit(":", 2)
        if int(pid) == os.getpid():
            return worker == worker_id()
        return process_alive(int(pid), None)
    except ValueError:
        return False


def end_attempt_processes(services: Services, attempt: Attempt | None) -> None:
    """End the run command of an attempt whose supervisor is gone, before the job is
    re-queued or failed, so no two copies of a job run at once.

    Uses what the store recorded (the run's cgroup, then its pid and start time), never a
    file the job could write.
    """
    from opendps.runner import limits
    from opendps.runner.container import remove_job_container
    from opendps.runner.execute import end_processes

    if attempt is None:
        return
    remove_job_container(services.settings, attempt.job_id)  # conmon keeps a container running
    group = limits.cgroup_from_paths(attempt.run_cgroup or [])
    pid = attempt.run_pid if process_alive(attempt.run_pid, attempt.run_pid_started) else None
    if group is None and pid is None:
        return
    end_processes(pid or 0, 0.0, group)
    if group is not None:
        group.remove()


def kill_orphaned_run(services: Services, job: Job) -> None:
    """End what is left of a job's current attempt (see :func:`end_attempt_processes`)."""
    end_attempt_processes(services, services.job_store.current_attempt(job.id))


def recover_job(
    services: Services, job: Job, message: str, attempt: Attempt | None = None
) -> Job | None:
    """A running job lost its supervisor: dismiss, re-queue or fail it (fenced by attempt)."""
    store = services.job_store
    if attempt is None:
        attempt = store.current_attempt(job.id)
    end_attempt_processes(services, attempt)
    number = job.attempts
    try:
        if job.cancel_requested:
            return store.transition(
                job.id,
                JobStatus.DISMISSED,
                allowed_from=[JobStatus.RUNNING],
                reason=Reason.CANCELLED,
                phase=Phase.RUN,
                message="cancelled (its supervisor was gone)",
                attempt=number,
            )
        if attempt is not None and attempt.run_finished is not None:
            # The run command ended; running it again would be a silent second run.
            log.warning("job %s: %s after its run", job.id, message, extra={"action": "job_lost"})
            return store.transition(
                job.id,
                JobStatus.FAILED,
                allowed_from=[JobStatus.RUNNING],
                reason=Reason.WORKER_LOST,
                phase=Phase.STAGE,
                message=f"{message} after the run command had ended; not run again",
                attempt=number,
            )
        if job.attempts < services.settings.max_attempts:
            log.warning("job %s: %s; re-queued", job.id, message, extra={"action": "job_requeued"})
            return store.requeue(
                job.id,
                f"{message}; re-queued (attempt {job.attempts} of "
                f"{services.settings.max_attempts})",
                attempt=number,
            )
        log.warning("job %s: %s; failed", job.id, message, extra={"action": "job_lost"})
        return store.transition(
            job.id,
            JobStatus.FAILED,
            allowed_from=[JobStatus.RUNNING],
            reason=Reason.WORKER_LOST,
            phase=Phase.RUN,
            message=f"{message}; gave up after {job.attempts} attempts",
            attempt=number,
        )
    except InvalidTransition:
        return None  # it ended or moved on meanwhile


def is_orphaned(attempt: Attempt | None, heartbeat_timeout: float | None = None) -> bool:
    """No live supervisor: its pid is gone, or it never started (claimer dead, or claimed
    longer than ``heartbeat_timeout`` ago without a supervisor)."""
    if attempt is None:
        return True
    if attempt.pid is None:
        if not worker_alive(attempt.worker):
            return True
        if heartbeat_timeout is None:
            return False
        return utcnow() - attempt.started > timedelta(seconds=heartbeat_timeout)
    return not process_alive(attempt.pid, attempt.pid_started)


def recover_node(services: Services) -> tuple[list[tuple[Job, Attempt]], list[Job]]:
    """Check every running job of this node: answers (adopted, recovered)."""
    adopted: list[tuple[Job, Attempt]] = []
    recovered: list[Job] = []
    timeout = services.settings.heartbeat_timeout
    for job, attempt in services.job_store.running_on_node(node_id()):
        if is_orphaned(attempt, timeout):
            result = recover_job(services, job, "its supervisor process was gone", attempt)
            if result is not None:
                recovered.append(result)
        elif attempt is not None:
            adopted.append((job, attempt))
    return adopted, recovered


def recover_host(services: Services, host: str) -> tuple[list[Job], list[Job]]:
    """Compatibility name for :func:`recover_node` (``host`` is this machine)."""
    adopted, recovered = recover_node(services)
    return [job for job, _ in adopted], recovered

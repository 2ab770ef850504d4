"""Why a waiting job is not running yet, in words (job page, queues page).

The queue documents are those of ``GET /queues`` (limits, depth, running, workers); this
module only reads them and the job's build, and says what holds the job back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opendps.errors import NoSuchProcess
from opendps.models import Algorithm, BuildStatus, Job, JobStatus


def worker_count(workers: Any) -> int | None:
    """``workers`` of a queue document: a list of workers (scale-out), a count, or None."""
    if workers is None:
        return None
    if isinstance(workers, list):
        return len(workers)
    return int(workers)


def queue_note(queue: dict[str, Any]) -> str | None:
    """What a queue with waiting jobs is short of; None when nothing waits."""
    depth, running = queue.get("depth", 0), queue.get("running", 0)
    if not depth:
        return None
    workers = worker_count(queue.get("workers"))
    if workers == 0:
        return (
            f"{depth} waiting and no worker serves this queue: "
            f"start one with `dps worker --queue {queue['name']}`"
        )
    slots = queue.get("max_running") or queue.get("slots")
    if slots and running >= slots:
        return f"{depth} waiting: all {slots} slot(s) are busy"
    return f"{depth} waiting: a slot is free, the next job starts within seconds"


def why_waiting(
    algorithm_of: Callable[[int], Algorithm], job: Job, queue: dict[str, Any] | None
) -> str | None:
    """Why an accepted job has not started; None once it has. ``algorithm_of`` looks an
    algorithm up by id (``AlgorithmService.get_by_id``)."""
    if job.status != JobStatus.ACCEPTED:
        return None
    if job.cancel_requested:
        return "a cancel was requested; it will not start"
    try:
        algorithm = algorithm_of(job.algorithm_id)
    except NoSuchProcess:
        return "its process was deleted: it cannot start (cancel it)"
    build = algorithm.build
    if build is not None and build.status != BuildStatus.READY:
        return f"it waits for the build of {algorithm.process_id} ({build.status.value})"
    if queue is None:
        return f"its queue {job.queue!r} is not configured on this server"
    workers = worker_count(queue.get("workers"))
    if workers == 0:
        return (
            f"no worker serves the queue {job.queue}: "
            f"start one with `dps worker --queue {job.queue}`"
        )
    slots = queue.get("max_running") or queue.get("slots")
    running, depth = queue.get("running", 0), queue.get("depth", 0)
    if slots and running >= slots:
        ahead = max(0, depth - 1)
        others = f"; {ahead} other job(s) wait in it too" if ahead else ""
        return f"all {slots} slot(s) of the queue {job.queue} are busy ({running} running){others}"
    return "it is next in line: a free slot picks it up within seconds"

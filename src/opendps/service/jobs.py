"""JobService: submit, look at, list and cancel jobs; read their logs, outputs and metrics."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opendps.errors import Forbidden, InvalidInput, NoSuchJob, NoSuchQueue, NotFound
from opendps.models import Algorithm, Batch, BuildStatus, Job, JobStatus, Page, Phase, Reason
from opendps.registry.spec import AlgorithmSpec
from opendps.service.inputs import check_local_inputs, normalise_inputs
from opendps.store.jobstore import JobFilters

if TYPE_CHECKING:
    from opendps.service.context import Services
    from opendps.settings import Settings

LOG_FILES = {"stdout": "_stdout.txt", "stderr": "_stderr.txt"}


@dataclass(frozen=True)
class Submission:
    """One job to create: which algorithm, with what, where."""

    process_id: str
    inputs: Mapping[str, Any]
    queue: str | None = None
    priority: int = 5
    tags: Sequence[str] = ()
    dedup: bool = False


def output_prefix(job: Job) -> str:
    """MAAP's layout:
    <user>/dps_output/<algorithm>/<version>/<tag>/<YYYY>/<MM>/<DD>/<HH>/<MM>/<SS>/<us>."""
    at = job.created
    parts = [job.owner, "dps_output", job.algorithm, job.version]
    if job.tag:
        parts.append(job.tag.replace("/", "_"))
    parts += [f"{at:%Y}", f"{at:%m}", f"{at:%d}", f"{at:%H}", f"{at:%M}", f"{at:%S}", f"{at:%f}"]
    return "/".join(parts)


def work_dir_of(settings: Settings, job: Job) -> Path:
    """A job's work dir: known from its id while it runs (no store write needed for it)."""
    return Path(job.work_dir) if job.work_dir else settings.jobs_dir / job.id


class JobService:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.store = services.job_store

    # -- submitting -----------------------------------------------------------------------

    def resolve_queue(self, requested: str | None, spec: AlgorithmSpec, user: str) -> str:
        settings = self.services.settings
        name = requested or spec.queue or settings.default_queue
        queue = settings.queue(name)
        if queue is None:
            names = ", ".join(q.name for q in settings.queues)
            raise NoSuchQueue(f"unknown queue {name!r}; available queues: {names}")
        if settings.auth and not queue.guest and self.services.identity.is_guest(user):
            raise Forbidden(f"user {user!r} may not use queue {name!r}")
        return name

    def _prepare(self, submission: Submission, owner: str) -> dict[str, Any]:
        algorithm = self.services.algorithms.get(submission.process_id)
        spec = self.services.algorithms.spec_of(algorithm)
        if not 0 <= int(submission.priority) <= 9:
            raise InvalidInput(f"priority must be 0..9; got {submission.priority}")
        inputs = normalise_inputs(spec, submission.inputs)
        if not self.services.settings.local_inputs_allowed:
            check_local_inputs(spec, inputs)
        queue = self.resolve_queue(submission.queue, spec, owner)
        tags = [str(t) for t in submission.tags if str(t)]
        record: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "algorithm_id": algorithm.id,
            "algorithm": algorithm.name,
            "version": algorithm.version,
            "owner": owner,
            "queue": queue,
            "priority": int(submission.priority),
            "tags": tags,
            "inputs": inputs,
            "_algorithm": algorithm,
        }
        if submission.dedup:
            key = json.dumps([algorithm.id, inputs, queue, tags], sort_keys=True, default=str)
            record["dedup_key"] = hashlib.sha256(key.encode()).hexdigest()
        return record

    def submit(self, submission: Submission, *, owner: str) -> Job:
        return self.submit_many([submission], owner=owner)[0]

    def submit_many(
        self, submissions: Sequence[Submission], *, owner: str, batch: bool = False
    ) -> list[Job]:
        """Validate every submission first, then create all jobs in one transaction."""
        records = []
        for n, submission in enumerate(submissions):
            try:
                records.append(self._prepare(submission, owner))
            except InvalidInput as exc:
                if len(submissions) > 1:
                    raise InvalidInput(f"job {n + 1}: {exc.message}") from exc
                raise
        algorithms: dict[str, Algorithm] = {r["id"]: r.pop("_algorithm") for r in records}
        batch_id = str(uuid.uuid4()) if batch else None
        jobs = self.store.create_jobs(records, batch_id=batch_id, batch_owner=owner)
        for job in jobs:
            algorithm = algorithms.get(job.id)
            if algorithm and algorithm.build and algorithm.build.status == BuildStatus.FAILED:
                self.store.fail_waiting_jobs(
                    algorithm.id,
                    Reason.BUILD_ERROR,
                    Phase.BUILD,
                    f"the build of {algorithm.process_id} failed: {algorithm.build.message}",
                )
        self.services.work_available.set()
        if any(a.build and a.build.status == BuildStatus.FAILED for a in algorithms.values()):
            return [self.store.get_job(j.id) if not j.deduped else j for j in jobs]
        return jobs

    # -- reading --------------------------------------------------------------------------

    def get(self, job_id: str, *, user: str | None = None) -> Job:
        job = self.store.get_job(job_id)
        self._check_owner(job, user)
        return job

    def _check_owner(self, job: Job, user: str | None) -> None:
        if user is None or not self.services.settings.auth:
            return
        if job.owner != user and not self.services.identity.is_admin(user):
            raise NoSuchJob(f"no job with id {job.id!r}")  # don't reveal others' jobs

    def list(
        self,
        filters: JobFilters,
        *,
        limit: int = 10,
        cursor: str | None = None,
        offset: int | None = None,
        sort: str = "-created",
        count: bool = True,
    ) -> Page:
        """``count=False`` skips ``number_matched`` (-1), for callers that count otherwise."""
        if not 1 <= limit <= 10000:
            raise InvalidInput(f"limit must be 1..10000; got {limit}")
        return self.store.list_jobs(
            filters, limit=limit, cursor=cursor, offset=offset, sort=sort, count=count
        )

    def count(self, filters: JobFilters) -> int:
        return self.store.count_jobs(filters)

    def count_by_status(self, filters: JobFilters) -> dict[str, int]:
        """The status tiles of a listing: its jobs per status, the status filter aside."""
        return self.store.count_by_status(filters)

    def events(self, job_id: str, *, user: str | None = None) -> list:
        from opendps.service.timeline import history

        self.get(job_id, user=user)
        return history(self.store.job_events(job_id))  # internal records are not history

    def attempts(self, job_id: str, *, user: str | None = None) -> list:
        self.get(job_id, user=user)
        return self.store.attempts(job_id)

    # -- cancelling and retrying ----------------------------------------------------------

    def cancel(self, job_id: str, *, user: str | None = None) -> Job:
        """Queued: dismissed at once. Running: its supervisor kills it within a second or so."""
        self.get(job_id, user=user)
        job = self.store.request_cancel(job_id)
        self.services.work_available.set()
        return job

    def retry(self, job_id: str, *, user: str | None = None) -> Job:
        """A new job with the same algorithm, inputs, queue, priority and tags."""
        job = self.get(job_id, user=user)
        return self.submit(
            Submission(
                process_id=job.process_id,
                inputs=job.inputs,
                queue=job.queue,
                priority=job.priority,
                tags=job.tags,
            ),
            owner=job.owner,
        )

    # -- batches --------------------------------------------------------------------------

    def get_batch(self, batch_id: str, *, user: str | None = None) -> Batch:
        batch = self.store.get_batch(batch_id)
        auth = user is not None and self.services.settings.auth
        if auth and batch.owner != user and not self.services.identity.is_admin(user):
            raise NoSuchJob(f"no batch with id {batch_id!r}")  # as if it did not exist
        return batch

    def list_batches(self, *, user: str, limit: int = 25, cursor: str | None = None) -> Page:
        """The batches a user may see: their own; everyone's for admins or with auth off."""
        if not 1 <= limit <= 1000:
            raise InvalidInput(f"limit must be 1..1000; got {limit}")
        settings = self.services.settings
        owner = user if settings.auth and not self.services.identity.is_admin(user) else None
        return self.store.list_batches(owner=owner, limit=limit, cursor=cursor)

    def cancel_batch(self, batch_id: str, *, user: str | None = None) -> Batch:
        self.get_batch(batch_id, user=user)
        for job_id in self.store.batch_job_ids(batch_id, [JobStatus.ACCEPTED, JobStatus.RUNNING]):
            self.store.request_cancel(job_id)
        self.services.work_available.set()
        return self.store.get_batch(batch_id)

    def retry_batch(
        self,
        batch_id: str,
        *,
        user: str | None = None,
        reasons: Sequence[Reason] | None = None,
    ) -> list[Job]:
        """Resubmit the batch's failed and dismissed jobs (only those that ended with one of
        ``reasons``, if given) as a new batch; the originals keep their history."""
        self.get_batch(batch_id, user=user)
        statuses = [JobStatus.FAILED, JobStatus.DISMISSED]
        ids = self.store.batch_job_ids(batch_id, statuses, reasons=reasons)
        jobs = [self.store.get_job(i) for i in ids]
        if not jobs:
            return []
        return self.submit_many(
            [
                Submission(
                    process_id=j.process_id,
                    inputs=j.inputs,
                    queue=j.queue,
                    priority=j.priority,
                    tags=j.tags,
                )
                for j in jobs
            ],
            owner=jobs[0].owner,
            batch=True,
        )

    # -- logs, outputs, metrics -----------------------------------------------------------

    def logs(self, job_id: str, *, user: str | None = None) -> dict[str, str]:
        """stdout and stderr: from the work dir while it exists, else from storage."""
        job = self.get(job_id, user=user)
        return {stream: self.read_log(job, stream) for stream in LOG_FILES}

    def read_log(self, job: Job, stream: str, offset: int = 0) -> str:
        name = LOG_FILES[stream]
        path = work_dir_of(self.services.settings, job) / name
        if path.exists():
            with open(path, "rb") as handle:
                handle.seek(offset)
                return handle.read().decode(errors="replace")
        if job.started is not None:  # the work dir is gone once a successful job is staged
            storage = self.services.storage
            key = f"{output_prefix(job)}/{name}"
            if storage.exists(key):
                with storage.open(key) as handle:
                    return handle.read()[offset:].decode(errors="replace")
        return ""

    def outputs(self, job_id: str, *, user: str | None = None) -> dict[str, Any]:
        job = self.get(job_id, user=user)
        storage = self.services.storage
        prefix = output_prefix(job)
        files = storage.list(prefix) if job.status.terminal else []
        return {
            "location": storage.url_for(prefix),
            "outputs": [{"path": f.path, "size": f.size, "url": f.url} for f in files],
        }

    def open_output(self, job_id: str, path: str, *, user: str | None = None):  # type: ignore[no-untyped-def]
        job = self.get(job_id, user=user)
        parts = Path(path).parts
        if not path or path.startswith("/") or ".." in parts:
            raise InvalidInput(f"output path {path!r} must be relative and stay inside the job")
        key = f"{output_prefix(job)}/{path}"
        if not self.services.storage.exists(key):
            raise NotFound(f"job {job_id} has no output {path!r}")
        return self.services.storage.open(key)

    def metrics(self, job_id: str, *, user: str | None = None) -> dict[str, Any]:
        job = self.get(job_id, user=user)
        queued = job.created
        base: dict[str, Any] = {
            "job_id": job.id,
            "status": job.status.value,
            "queue": job.queue,
            "attempts": job.attempts,
            "created": queued.isoformat(),
            "started": job.started.isoformat() if job.started else None,
            "finished": job.finished.isoformat() if job.finished else None,
            "queue_wait_seconds": (job.started - queued).total_seconds() if job.started else None,
            "run_seconds": (
                (job.finished - job.started).total_seconds()
                if job.started and job.finished
                else None
            ),
            "exit_code": job.exit_code,
        }
        # The memory/CPU series over the run (runner/sampling.py), for the job page's chart.
        return {**base, **job.metrics, "samples": self.services.samples.job_samples(job.id)}

    def follow_logs(
        self, job_id: str, *, user: str | None = None, poll: float = 0.5
    ) -> Iterator[tuple[str, str]]:
        """Yield (stream, new text) as the job writes, until it is terminal."""
        import time

        offsets = dict.fromkeys(LOG_FILES, 0)
        while True:
            job = self.get(job_id, user=user)
            for stream in LOG_FILES:
                text = self.read_log(job, stream, offsets[stream])
                if text:
                    offsets[stream] += len(text.encode())
                    yield stream, text
            if job.status.terminal:
                return
            time.sleep(poll)

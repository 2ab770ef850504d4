"""JobService: submit, look at, list and cancel jobs; read their logs, outputs and metrics."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from opendps.errors import Forbidden, InvalidInput, NoSuchJob, NoSuchProcess, NoSuchQueue, NotFound
from opendps.files import open_in_work_dir
from opendps.models import Algorithm, BuildStatus, Job, JobStatus, Page, Phase, Reason
from opendps.net.safety import UrlPolicy
from opendps.registry.spec import AlgorithmSpec
from opendps.service.algorithms import AlgorithmService, split_process_id
from opendps.service.inputs import normalise_inputs, parse_priority
from opendps.service.notifications import Notify
from opendps.service.policy import Policy
from opendps.service.queries import JobQuery, check_limit
from opendps.service.secrets import SecretService
from opendps.settings import Settings
from opendps.store import JobStore, NotificationStore, SampleStore
from opendps.store.jobstore import JobFilters

if TYPE_CHECKING:
    from opendps.storage.base import Storage

LOG_FILES = {"stdout": "_stdout.txt", "stderr": "_stderr.txt"}


class NewJob(NamedTuple):
    """What the dispatcher needs of a job just created (a batch makes no Job records)."""

    id: str
    queue: str
    priority: int
    deduped: bool = False


@dataclass(frozen=True)
class Submission:
    """One job to create: which algorithm, with what, where."""

    process_id: str
    inputs: Mapping[str, Any]
    queue: str | None = None
    priority: int | str = 5  # as the dialect got it; the service checks it (parse_priority)
    tags: Sequence[str] = ()
    dedup: bool = False
    # How to answer (OGC ``response``/``outputs``/``subscriber``), kept on the job.
    request: Mapping[str, Any] = field(default_factory=dict)
    # The values in their OGC encodings (links, qualified values), kept for built-in
    # processes, which answer them verbatim; ``inputs`` holds the decoded values checked.
    as_sent: Mapping[str, Any] | None = None
    # The algorithm of ``process_id`` as the caller just looked it up (the OGC route needs
    # it to decode the inputs): saves a second catalogue read per submit.
    algorithm: Algorithm | None = None


def output_prefix(job: Job) -> str:
    """MAAP's layout:
    <user>/dps_output/<algorithm>/<version>/<tag>/<YYYY>/<MM>/<DD>/<HH>/<MM>/<SS>/<us>."""
    at = job.created
    parts = [job.owner, "dps_output", job.algorithm, job.version]
    if job.tag:
        parts.append(job.tag.replace("/", "_"))
    parts += [f"{at:%Y}", f"{at:%m}", f"{at:%d}", f"{at:%H}", f"{at:%M}", f"{at:%S}", f"{at:%f}"]
    return "/".join(parts)


#: A tag is a folder of the output path (``output_prefix``): at most this long.
MAX_TAG_LENGTH = 200


def check_tag(tag: str) -> str:
    """A tag becomes a path segment of the staged outputs: refuse what could leave it."""
    segment = tag.replace("/", "_")
    if segment in (".", ".."):
        raise InvalidInput(f"tag {tag!r} cannot be used: it would name a parent folder")
    if any(ord(c) < 32 or ord(c) == 127 for c in tag):
        raise InvalidInput(f"tag {tag!r} contains control characters")
    if len(tag) > MAX_TAG_LENGTH:
        raise InvalidInput(f"a tag may have at most {MAX_TAG_LENGTH} characters; got {len(tag)}")
    return tag


def work_dir_of(settings: Settings, job: Job) -> Path:
    """A job's work dir: known from its id while it runs (no store write needed for it)."""
    return Path(job.work_dir) if job.work_dir else settings.jobs_dir / job.id


def _missing_job(job_id: str) -> NoSuchJob:
    return NoSuchJob(f"no job with id {job_id!r}")


def _missing_batch(batch_id: str) -> NoSuchJob:
    return NoSuchJob(f"no batch with id {batch_id!r}")


class JobService:
    """Every operation on jobs and batches takes the acting ``user`` and applies
    ``service.policy``: another user's job or batch is missing, unless ``user`` is an admin."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        algorithms: AlgorithmService,
        policy: Policy,
        secrets: SecretService,
        notifications: NotificationStore,
        samples: SampleStore,
        *,
        storage: Callable[[], Storage],
        work_available: threading.Event,
        on_submitted: Callable[[Sequence[Job]], None] | None = None,
        on_cancelled: Callable[[Sequence[str]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.algorithms = algorithms
        self.policy = policy
        self.secrets = secrets
        self.notifications = notifications
        self.samples = samples  # the memory/CPU series of each run (metrics' ``samples``)
        self._storage = storage
        self.work_available = work_available
        # Scale-out: the Celery dispatcher publishes new jobs and revokes cancelled ones.
        self._on_submitted = on_submitted
        self._on_cancelled = on_cancelled

    @property
    def storage(self) -> Storage:
        return self._storage()

    def _announce_submitted(self, jobs: Sequence[Job] | Sequence[NewJob]) -> None:
        """Wake the local executor at once (or publish the jobs, in scale-out mode)."""
        self.work_available.set()
        if self._on_submitted is not None:
            self._on_submitted(jobs)

    def _announce_cancelled(self, job_ids: Sequence[str]) -> None:
        self.work_available.set()
        if self._on_cancelled is not None:
            self._on_cancelled(job_ids)

    # -- submitting -----------------------------------------------------------------------

    def resolve_queue(self, requested: str | None, spec: AlgorithmSpec, user: str) -> str:
        settings = self.settings
        name = requested or spec.queue or settings.default_queue
        queue = settings.queue(name)
        if queue is None:
            names = ", ".join(q.name for q in settings.queues)
            raise NoSuchQueue(f"unknown queue {name!r}; available queues: {names}")
        if not self.policy.may_use_queue(user, queue):
            raise Forbidden(f"user {user!r} may not use queue {name!r}")
        return name

    def _prepare(
        self, submission: Submission, owner: str, cache: dict[Any, Any] | None = None
    ) -> dict[str, Any]:
        """One job's record. ``cache`` memoises, for one call, the look-ups that are the
        same for every job of a batch (the algorithm and its spec, the URL policy, the queue
        decision), so a batch of 100,000 rows reads its algorithm once; an algorithm the
        caller already holds (``submission.algorithm``, e.g. the OGC route's) is not read
        again."""
        cache = {} if cache is None else cache
        pid = submission.process_id
        if (found := cache.get(pid)) is None:
            given = submission.algorithm
            usable = given is not None and given.process_id == pid
            algorithm = given if usable else self.algorithms.get(pid)
            found = cache[pid] = (algorithm, self.algorithms.spec_of(algorithm))
        algorithm, spec = found
        try:
            priority = parse_priority(submission.priority)
        except InvalidInput as exc:
            raise InvalidInput(exc.message, column="priority") from None
        if (policy := cache.get("url_policy")) is None:
            policy = cache["url_policy"] = UrlPolicy.from_settings(self.settings)
        inputs = normalise_inputs(spec, submission.inputs, policy)
        if submission.as_sent is not None:
            inputs = {k: submission.as_sent.get(k, v) for k, v in inputs.items()}
        queue_key = ("queue", submission.queue, algorithm.id)
        if (queue := cache.get(queue_key)) is None:
            queue = cache[queue_key] = self.resolve_queue(submission.queue, spec, owner)
        try:
            tags = [check_tag(str(t)) for t in submission.tags if str(t)]
        except InvalidInput as exc:
            raise InvalidInput(exc.message, column="tag") from None
        record: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "algorithm_id": algorithm.id,
            "algorithm": algorithm.name,
            "version": algorithm.version,
            "owner": owner,
            "queue": queue,
            "priority": priority,
            "tags": tags,
            "inputs": inputs,
            "request": dict(submission.request) or None,
            "_algorithm": algorithm,
        }
        if submission.dedup:
            key = json.dumps([algorithm.id, inputs, queue, tags], sort_keys=True, default=str)
            record["dedup_key"] = hashlib.sha256(key.encode()).hexdigest()
        return record

    def submit(self, submission: Submission, *, owner: str) -> Job:
        return self.submit_many([submission], owner=owner)[0]

    def submit_many(
        self,
        submissions: Sequence[Submission],
        *,
        owner: str,
        label: Callable[[int], str] | None = None,
    ) -> list[Job]:
        """Validate every submission first, then create all jobs in one transaction.

        An invalid one raises InvalidInput prefixed with ``label(index)`` (default
        ``job N``), keeping the error's context (``input``, ``column``)."""
        records, algorithms = self.prepare_many(submissions, owner, label)
        jobs = self.store.create_jobs(records)
        failed = self._fail_if_build_failed(algorithms)
        self._announce_submitted(jobs)
        if failed:
            return [self.store.get_job(j.id) if not j.deduped else j for j in jobs]
        return jobs

    def submit_batch(
        self,
        submissions: Sequence[Submission],
        *,
        owner: str,
        label: Callable[[int], str] | None = None,
        max_running: int | None = None,
    ) -> tuple[str, list[tuple[str, bool]]]:
        """Like submit_many, as a new batch: answers its id and, per submission, the job
        id and whether it was deduplicated (no Job records: a batch may hold 100,000)."""
        records, algorithms = self.prepare_many(submissions, owner, label)
        batch_id = str(uuid.uuid4())
        process = f"{records[0]['algorithm']}:{records[0]['version']}" if records else None
        created = self.store.create_batch_jobs(
            records, batch_id=batch_id, owner=owner, process=process, max_running=max_running
        )
        self._fail_if_build_failed(algorithms)
        new = {job_id for job_id, deduped in created if not deduped}
        self._announce_submitted(
            [NewJob(r["id"], r["queue"], r["priority"]) for r in records if r["id"] in new]
        )
        return batch_id, created

    def prepare_many(
        self,
        submissions: Sequence[Submission],
        owner: str,
        label: Callable[[int], str] | None = None,
    ) -> tuple[list[dict[str, Any]], dict[int, Algorithm]]:
        """The store records of valid submissions, and their algorithms by id."""
        records = []
        cache: dict[Any, Any] = {}
        for n, submission in enumerate(submissions):
            try:
                records.append(self._prepare(submission, owner, cache))
            except (InvalidInput, NoSuchQueue) as exc:
                if len(submissions) > 1 or label is not None:
                    where = label(n) if label else f"job {n + 1}"
                    raise type(exc)(f"{where}: {exc.message}", **exc.context) from exc
                raise
        # Ids in ascending order along the batch: the id indexes (jobs, events) then grow at
        # one place instead of at random ones, which makes a 100,000-row insert much faster.
        for record, job_id in zip(records, sorted(r["id"] for r in records), strict=True):
            record["id"] = job_id
        algorithms: dict[int, Algorithm] = {}
        for record in records:
            algorithm = record.pop("_algorithm")
            algorithms[algorithm.id] = algorithm
        return records, algorithms

    def _fail_if_build_failed(self, algorithms: Mapping[int, Algorithm]) -> bool:
        """Jobs submitted to an algorithm whose build failed fail at once (build_error)."""
        failed = False
        for algorithm in algorithms.values():
            if algorithm.build and algorithm.build.status == BuildStatus.FAILED:
                failed = True
                self.store.fail_waiting_jobs(
                    algorithm.id,
                    Reason.BUILD_ERROR,
                    Phase.BUILD,
                    f"the build of {algorithm.process_id} failed: {algorithm.build.message}",
                )
        return failed

    # -- reading --------------------------------------------------------------------------

    def get(self, job_id: str, user: str) -> Job:
        """The job, if ``user`` may see it; else exactly the error of a missing one."""
        try:
            job = self.store.get_job(job_id)
        except NoSuchJob:
            raise _missing_job(job_id) from None
        self.policy.check_visible(user, job.owner, _missing_job(job_id))
        return job

    def list_jobs(self, query: JobQuery, user: str) -> Page:
        """One page of the jobs ``user`` may see that match ``query`` (newest first)."""
        check_limit(query.limit)
        if query.offset is not None and not 0 <= query.offset < 2**62:  # the driver overflows
            raise InvalidInput(f"offset must be 0..2**62; got {query.offset}")
        if query.after_seq is not None and not 0 <= query.after_seq < 2**63:
            raise InvalidInput(f"after: {query.after_seq} is not a job's place in the list")
        filters = self._filters(query, user)
        if filters is None:
            return Page(items=[], number_matched=0 if query.count else -1, next_cursor=None)
        return self.store.list_jobs(
            filters,
            limit=query.limit,
            cursor=query.cursor,
            offset=query.offset,
            sort=query.sort,
            count=query.count,
        )

    def _filters(self, query: JobQuery, user: str) -> JobFilters | None:
        """The store's filters for ``query`` within ``user``'s scope; None = nothing."""
        scope = self.policy.scope(user)
        owner = query.owner or scope
        if query.matches_nothing or (scope is not None and owner != scope):
            return None
        processes = tuple(self._process_key(pid) for pid in query.process_ids)
        return JobFilters(
            owner=owner,
            statuses=query.statuses,
            processes=processes,
            queue=query.queue,
            tag=query.tag,
            batch_id=query.batch,
            priority=query.priority,
            job_ids=query.job_ids,
            created_after=query.created_after,
            created_before=query.created_before,
            finished_after=query.finished_after,
            min_duration=query.min_duration,
            max_duration=query.max_duration,
            version=query.version,
            text=query.text or None,
            after_seq=query.after_seq,
        )

    def _process_key(self, process_id: str) -> tuple[str, str | None]:
        """``name[:version]``, or MAAP's numeric process id of a deployed algorithm (jobs
        keep their algorithm's name and version after it is undeployed)."""
        pid = process_id.strip().removeprefix("job-")
        if pid.isdigit():
            try:
                algorithm = self.algorithms.get_by_id(int(pid))
            except NoSuchProcess:
                pass  # a name made of digits
            else:
                return algorithm.name, algorithm.version
        return split_process_id(pid)

    def count_by_status(self, query: JobQuery, user: str) -> dict[str, int]:
        """The status tiles of a listing: how many of the jobs ``user`` may see that match
        ``query`` (its statuses aside) are in each status; one grouped count."""
        filters = self._filters(replace(query, statuses=()), user)
        if filters is None:
            return {s.value: 0 for s in JobStatus}
        return self.store.count_by_status(filters)

    def events(self, job_id: str, user: str) -> list:
        self.get(job_id, user)
        return self.store.job_events(job_id)

    def attempts(self, job_id: str, user: str) -> list:
        self.get(job_id, user)
        return self.store.attempts(job_id)

    def wait(self, job_id: str, user: str, timeout: float) -> Job:
        """Block until the job is terminal or ``timeout`` seconds have passed; answers the
        job as it is then. The one wait of every surface (sync execution, DELETE, MAAP's
        ``wait_for_completion``, ``GET /jobs/{id}?wait=``, following logs).

        The job's end is written by its supervisor, possibly in another process or on
        another machine, so this reads the store, backing off from 50 ms to 0.5 s.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        delay = 0.05
        while True:
            job = self.get(job_id, user)
            remaining = deadline - time.monotonic()
            if job.status.terminal or remaining <= 0:
                return job
            time.sleep(min(delay, remaining))
            delay = min(delay * 1.5, 0.5)

    def subscribe(
        self,
        job_id: str,
        user: str,
        *,
        base_url: str,
        notify: Notify | None = None,
        ogc_uris: Mapping[str, str] | None = None,
    ) -> None:
        """Tell someone when the job ends: ``notify`` (e-mail, webhook; DESIGN §14) and OGC
        ``subscriber`` URIs. Kept in the store and sent by the executor side's delivery loop,
        so a restart loses none and a slow endpoint delays no request."""
        job = self.get(job_id, user)
        if notify is not None:
            self.notifications.subscribe(
                job.owner,
                base_url=base_url,
                job_ids=[job.id],
                email=notify.email,
                webhook=notify.webhook,
                events=notify.on,
            )
        if ogc_uris:
            self.notifications.subscribe(
                job.owner, base_url=base_url, job_ids=[job.id], events=[], ogc_uris=ogc_uris
            )

    # -- cancelling and retrying ----------------------------------------------------------

    def cancel(self, job_id: str, user: str) -> Job:
        """Queued: dismissed at once. Running: its supervisor kills it within a second or so."""
        self.get(job_id, user)
        job = self.store.request_cancel(job_id)
        self._announce_cancelled([job_id])
        return job

    def retry(self, job_id: str, user: str) -> Job:
        """A new job with the same algorithm, inputs, queue, priority and tags (and the
        same owner, also when an admin retries it)."""
        job = self.get(job_id, user)
        return self.submit(
            Submission(
                process_id=job.process_id,
                inputs=job.inputs,
                queue=job.queue,
                priority=job.priority,
                tags=job.tags,
                request=job.request,
            ),
            owner=job.owner,
        )

    # -- logs, outputs, metrics -----------------------------------------------------------

    def logs(self, job_id: str, user: str) -> dict[str, str]:
        """stdout and stderr: from the work dir while it exists, else from storage."""
        job = self.get(job_id, user)
        return {stream: self.read_log(job, stream) for stream in LOG_FILES}

    def read_log(self, job: Job, stream: str, offset: int = 0) -> str:
        """A log from ``offset`` (bytes), with the owner's secret values masked."""
        return self._masked(job, self._read_log_bytes(job, stream, offset))

    def read_log_chunk(self, job: Job, stream: str, offset: int = 0) -> tuple[str, int]:
        """What a log gained after ``offset``: (masked text, the next offset). While the job
        runs only whole lines are answered (a secret split over two reads would escape the
        mask)."""
        data = self._read_log_bytes(job, stream, offset)
        if not job.status.terminal:
            data = data[: data.rindex(b"\n") + 1] if b"\n" in data else b""
        return self._masked(job, data), offset + len(data)

    def _masked(self, job: Job, data: bytes) -> str:
        from opendps.runner.workdir import mask_text

        text = data.decode(errors="replace")
        return mask_text(text, self.secrets.values(job.owner)) if text else text

    def _read_log_bytes(self, job: Job, stream: str, offset: int = 0) -> bytes:
        name = LOG_FILES[stream]
        handle = open_in_work_dir(work_dir_of(self.settings, job), name)
        if handle is not None:
            with handle:
                handle.seek(offset)
                return handle.read()
        if job.started is not None:  # the work dir is gone once a successful job is staged
            storage = self.storage
            key = f"{output_prefix(job)}/{name}"
            if storage.exists(key):
                with storage.open(key) as handle:
                    return handle.read()[offset:]
        return b""

    def outputs(self, job_id: str, user: str) -> dict[str, Any]:
        job = self.get(job_id, user)
        storage = self.storage
        prefix = output_prefix(job)
        files = storage.list(prefix) if job.status.terminal else []
        return {
            "location": storage.url_for(prefix),
            "outputs": [{"path": f.path, "size": f.size, "url": f.url} for f in files],
        }

    def open_output(self, job_id: str, path: str, user: str):  # type: ignore[no-untyped-def]
        job = self.get(job_id, user)
        parts = Path(path).parts
        if not path or path.startswith("/") or ".." in parts:
            raise InvalidInput(f"output path {path!r} must be relative and stay inside the job")
        key = f"{output_prefix(job)}/{path}"
        if not self.storage.exists(key):
            raise NotFound(f"job {job_id} has no output {path!r}")
        return self.storage.open(key)

    def metrics(self, job_id: str, user: str) -> dict[str, Any]:
        job = self.get(job_id, user)
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
        return {**base, **job.metrics, "samples": self.samples.job_samples(job.id)}

    def follow_logs(self, job_id: str, user: str, poll: float = 0.5) -> Iterator[tuple[str, str]]:
        """Yield (stream, new text) as the job writes, until it is terminal."""
        offsets = dict.fromkeys(LOG_FILES, 0)
        job = self.get(job_id, user)
        while True:
            for stream in LOG_FILES:
                text, offsets[stream] = self.read_log_chunk(job, stream, offsets[stream])
                if text:
                    yield stream, text
            if job.status.terminal:
                return
            job = self.wait(job_id, user, poll)

"""run-local: run an algorithm here, exactly as a job would run, with no server.

``dps run-local algorithm.yml -i name=value`` is the tutorial's "test it locally first"
step. It uses the real pieces in one process: a data dir of its own (embedded SQLite and
local storage), the real build (clone, virtualenv, build command), the real submit-time
input checks, and ``run_job`` — the same code path an executor calls — so what passes
here passes on the server.

A build is kept in the data dir and reused while the registration's spec is unchanged
(the clone/build cache); ``rebuild=True`` forces a fresh one, e.g. after pushing new
commits to the same branch.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opendps.errors import BuildError, InvalidSpec, NoSuchProcess, OpenDPSError
from opendps.models import Algorithm, Build, BuildStatus, Job, JobStatus, Phase, Reason
from opendps.registry.spec import AlgorithmSpec
from opendps.service.context import Services
from opendps.service.jobs import Submission, output_prefix
from opendps.service.packages import Package, parse_package
from opendps.settings import Settings
from opendps.store.jobstore import JobFilters

OWNER = "anonymous"  # auth is off in a run-local store
BUILD_LOG_TAIL = 30  # lines of the build log quoted when a build fails
Progress = Callable[[str], None]
LogSink = Callable[[str, str], None]


def default_data_dir() -> Path:
    return Path.home() / ".opendps" / "run-local"


class LocalBuildFailed(BuildError):
    """The algorithm could not be built."""

    def __init__(self, message: str, log_tail: str) -> None:
        super().__init__(message, log_tail=log_tail)
        self.log_tail = log_tail


@dataclass(frozen=True)
class LocalRunResult:
    """What a local run did and produced."""

    job: Job  # the final record: status, reason, phase, message
    output_dir: Path  # where the staged outputs were copied
    files: list[Path]  # the copied files
    logs: dict[str, str]  # {"stdout": …, "stderr": …}
    metrics: dict[str, Any]  # as GET /jobs/{id}/metrics answers
    build: Build  # the build that ran the job
    built: bool  # False: an earlier build of the same spec was reused
    build_seconds: float  # time spent building in this call (0 when reused)

    @property
    def ok(self) -> bool:
        return self.job.status == JobStatus.SUCCESSFUL


def local_settings(
    data_dir: Path | str | None = None,
    base_url: str | None = None,
    config: Path | str | None = None,
) -> Settings:
    """Settings of a run-local store. Database and storage are always the data dir's own,
    whatever ``DPS_DATABASE_URL``/``DPS_STORAGE_URL`` say, so a local test never writes
    into a shared deployment."""
    root = Path(data_dir).expanduser() if data_dir else default_data_dir()
    root = root.resolve()
    return Settings.load(
        config,
        data_dir=root,
        database_url=f"sqlite:///{root / 'dps.db'}",
        storage_url=str(root / "storage"),
        base_url=base_url or os.environ.get("DPS_URL") or "http://127.0.0.1:8000",
        run_jobs=False,
        executor="local",
    )


def run_local(
    algorithm_file: Path | str,
    inputs: Mapping[str, Any] | None = None,
    *,
    output_dir: Path | str | None = None,
    queue: str | None = None,
    tag: str | None = None,
    data_dir: Path | str | None = None,
    base_url: str | None = None,
    config: Path | str | None = None,
    rebuild: bool = False,
    on_progress: Progress | None = None,
    on_log: LogSink | None = None,
) -> LocalRunResult:
    """Build (or reuse the build of) ``algorithm_file`` and run one job of it here.

    Raises :class:`~opendps.errors.InvalidSpec` / ``InvalidInput`` / ``NoSuchQueue`` for
    a bad registration or inputs, :class:`LocalBuildFailed` when the build fails. A job
    that runs and fails is not an exception: check ``result.ok`` and ``result.job``.
    ``on_log(stream, text)`` receives the job's output while it runs.
    """
    say = on_progress or (lambda _message: None)
    settings = local_settings(data_dir, base_url, config)
    package = _read_package(Path(algorithm_file))
    services = Services(settings)
    try:
        services.catalog.sync_queues(settings.queues)
        with _data_dir_lock(settings.data_dir, say):
            _clear_leftovers(services)
            algorithm, built, build_seconds = ensure_built(services, package, rebuild, say)
            job = _submit(services, algorithm, package.spec, inputs or {}, queue, tag)
            say(f"running job {job.id} on queue {job.queue}")
            final = _run_claimed(services, job, on_log)
            destination = Path(output_dir) if output_dir else Path.cwd() / f"output-{job.id[:8]}"
            files = copy_outputs(services, final, destination)
            return LocalRunResult(
                job=final,
                output_dir=destination.resolve(),
                files=files,
                logs=services.jobs.logs(final.id),
                metrics=services.jobs.metrics(final.id),
                build=algorithm.build,  # type: ignore[arg-type]
                built=built,
                build_seconds=build_seconds,
            )
    finally:
        services.close()


# -- registration and build -------------------------------------------------------------


def _read_package(path: Path) -> Package:
    if not path.is_file():
        raise InvalidSpec(f"{path}: no such file")
    media = "application/cwl+yaml" if path.suffix.lower() == ".cwl" else "application/yaml"
    return parse_package(path.read_bytes(), media)


def _stored_form(services: Services, spec: AlgorithmSpec) -> dict[str, Any]:
    """The spec as AlgorithmService.register will store it (unknown queues dropped)."""
    if spec.queue and services.settings.queue(spec.queue) is None:
        spec = spec.model_copy(update={"queue": None})
    return spec.model_dump(mode="json")


def _build_usable(build: Build | None) -> bool:
    if build is None or build.status != BuildStatus.READY:
        return False
    # The data dir may have been cleaned by hand; a ready record without files is no cache.
    return all(Path(d).is_dir() for d in (build.algorithm_dir, build.env_dir) if d)


def ensure_built(
    services: Services, package: Package, rebuild: bool = False, on_progress: Progress | None = None
) -> tuple[Algorithm, bool, float]:
    """The registered algorithm with a ready build: reused when the spec is unchanged,
    else (re)registered and built now. Answers (algorithm, built now?, build seconds)."""
    say = on_progress or (lambda _message: None)
    spec = package.spec
    try:
        existing: Algorithm | None = services.algorithms.get(spec.process_id)
    except NoSuchProcess:
        existing = None
    if (
        not rebuild
        and existing is not None
        and existing.spec == _stored_form(services, spec)
        and _build_usable(existing.build)
    ):
        commit = (existing.build.commit or "")[:12] if existing.build else ""
        say(f"reusing the build of {spec.process_id} (commit {commit})")
        return existing, False, 0.0
    algorithm = services.algorithms.register(
        spec,
        owner=OWNER,
        package=package.body,
        package_type=package.media_type,
        replace=True,
    )
    assert algorithm.build is not None
    if algorithm.build.status == BuildStatus.READY:  # nothing to build (no repository)
        return algorithm, False, 0.0
    say(f"building {spec.process_id} from {spec.repository_url}")
    started = time.monotonic()
    build = services.algorithms.run_build(algorithm.build)
    seconds = time.monotonic() - started
    if build.status != BuildStatus.READY:
        raise LocalBuildFailed(
            f"the build of {spec.process_id} failed: {build.message or 'see the build log'}",
            _tail(Path(build.log_path) if build.log_path else None, BUILD_LOG_TAIL),
        )
    say(f"built {spec.process_id} in {seconds:.1f} s (commit {(build.commit or '')[:12]})")
    return services.algorithms.get(spec.process_id), True, seconds


def _tail(path: Path | None, lines: int) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# -- the job ----------------------------------------------------------------------------


def _submit(
    services: Services,
    algorithm: Algorithm,
    spec: AlgorithmSpec,
    inputs: Mapping[str, Any],
    queue: str | None,
    tag: str | None,
) -> Job:
    submission = Submission(
        process_id=algorithm.process_id,
        inputs=local_file_urls(spec, inputs),
        queue=queue,
        tags=[tag] if tag else [],
    )
    return services.jobs.submit(submission, owner=OWNER)


def local_file_urls(spec: AlgorithmSpec, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """File inputs given as local paths become ``file://`` URLs (a convenience that only
    makes sense here, where the job runs on this machine)."""
    file_inputs = {i.name for i in spec.inputs_of("file")}

    def convert(value: Any) -> Any:
        if isinstance(value, list):
            return [convert(v) for v in value]
        if isinstance(value, str) and "://" not in value and value and Path(value).exists():
            return Path(value).resolve().as_uri()
        return value

    return {k: convert(v) if k in file_inputs else v for k, v in inputs.items()}


def _run_claimed(services: Services, job: Job, on_log: LogSink | None) -> Job:
    """Claim the job as an executor would and run it in this process."""
    from opendps.executors.recovery import node_id, worker_id
    from opendps.runner.run import run_job

    queue = services.settings.queue(job.queue)
    claimed = services.job_store.claim_next(
        {job.queue: max(queue.slots if queue else 1, 1)},
        host=os.uname().nodename,
        worker=worker_id(),
        node=node_id(),
    )
    if claimed is None or claimed.id != job.id:
        current = services.job_store.get_job(job.id)
        if current.status.terminal:  # e.g. failed at submit by a failed build
            return current
        raise OpenDPSError(f"job {job.id} could not be claimed (it is {current.status.value})")
    _record_self_as_supervisor(services, job.id)
    follower = _follow_logs(services, job.id, on_log) if on_log else None
    with _cancel_on_interrupt() as cancel:
        final = run_job(services, job.id, cancel_event=cancel)
    if follower is not None:
        follower.join(10)
    return final


def _record_self_as_supervisor(services: Services, job_id: str) -> None:
    """This process supervises the job, so recovery can tell if it died mid-run."""
    import psutil

    me = psutil.Process()
    services.job_store.record_supervisor(job_id, me.pid, me.create_time())


def _follow_logs(services: Services, job_id: str, on_log: LogSink) -> threading.Thread:
    def pump() -> None:
        for stream, text in services.jobs.follow_logs(job_id, poll=0.2):
            on_log(stream, text)

    thread = threading.Thread(target=pump, name=f"logs-{job_id[:8]}", daemon=True)
    thread.start()
    return thread


@contextmanager
def _cancel_on_interrupt() -> Iterator[threading.Event]:
    """The first Ctrl-C cancels the job the way DELETE /jobs/{id} would (its process
    group is stopped, what it wrote is staged, it ends ``dismissed``); a second one
    interrupts for real."""
    event = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event
        return

    def handler(signum: int, frame: Any) -> None:
        if event.is_set():
            raise KeyboardInterrupt
        event.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield event
    finally:
        signal.signal(signal.SIGINT, previous)


def copy_outputs(services: Services, job: Job, destination: Path) -> list[Path]:
    """Copy the job's staged files from storage into ``destination``."""
    prefix = output_prefix(job)
    storage = services.storage
    destination.mkdir(parents=True, exist_ok=True)
    written = []
    for item in storage.list(prefix):
        target = destination.joinpath(*item.path.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        with storage.open(f"{prefix}/{item.path}") as source, open(target, "wb") as sink:
            shutil.copyfileobj(source, sink, 1 << 20)
        written.append(target)
    return written


# -- the data dir -----------------------------------------------------------------------


@contextmanager
def _data_dir_lock(data_dir: Path, say: Progress) -> Iterator[None]:
    """One run-local at a time per data dir: it claims "the next job" of its store, and
    anything active it finds there was left by an interrupted run."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "run-local.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another run-local using {data_dir}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _clear_leftovers(services: Services) -> None:
    """End jobs an interrupted run-local left accepted or running (and their processes)."""
    from opendps.errors import InvalidTransition
    from opendps.executors.recovery import kill_orphaned_run

    store = services.job_store
    active = store.list_jobs(
        JobFilters(statuses=(JobStatus.ACCEPTED, JobStatus.RUNNING)), limit=10000
    ).items
    for job in active:
        kill_orphaned_run(services, job)
        status, reason = (
            (JobStatus.FAILED, Reason.WORKER_LOST)
            if job.status == JobStatus.RUNNING
            else (JobStatus.DISMISSED, Reason.CANCELLED)
        )
        try:
            store.transition(
                job.id,
                status,
                allowed_from=[job.status],
                reason=reason,
                phase=Phase.RUN if job.status == JobStatus.RUNNING else None,
                message="left over by an interrupted run-local",
            )
        except InvalidTransition:
            pass

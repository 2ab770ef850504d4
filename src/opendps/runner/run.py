"""run_job: the one code path that runs a claimed job, whichever executor called it.

claimed (running) -> build check -> prepare work dir -> disk check -> localize -> execute
-> stage -> finish. Every path ends in a terminal state with ``reason`` and ``phase``
(DESIGN §3).

Exactly one run (DESIGN §12): ``run_job`` works on one attempt of the job, and every store
write about it is fenced by that attempt number. The run command's pid and cgroup go to
the store when it starts and its end when it ends; from then on, a failure in staging or
in the final store write ends the job (``upload_error`` / ``worker_lost``) and never runs
the command again.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opendps.errors import InvalidTransition, OpenDPSError
from opendps.files import open_in_work_dir
from opendps.models import BuildStatus, Job, JobStatus, Phase, Reason
from opendps.registry.spec import AlgorithmSpec
from opendps.runner.workdir import WorkDir, mask_secrets, prepare_workdir
from opendps.service.inputs import positional_args

if TYPE_CHECKING:
    from opendps.service.context import Services

log = logging.getLogger(__name__)
RESULTS_FILE = "_results.json"  # built-in and CWL processes write their OGC results here


class JobFailed(Exception):
    """Ends the run early with a terminal state."""

    def __init__(self, status: JobStatus, reason: Reason, phase: Phase, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.phase, self.message = status, reason, phase, message


@dataclass
class RunState:
    job: Job
    attempt: int = 0
    work: WorkDir | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None
    results: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    image: str | None = None  # the container image the job runs in (runner/container.py)
    unboxed: bool = False  # CWL tools in podman: cwltool itself runs outside bwrap
    phase: Phase = Phase.BUILD
    _mark: float = field(default_factory=time.monotonic)

    def enter(self, phase: Phase) -> None:
        """Start a phase; the time spent in the previous one goes into the metrics."""
        self.close_phase()
        self.phase = phase

    def close_phase(self) -> None:
        now = time.monotonic()
        seconds = self.metrics.setdefault("phase_seconds", {})
        seconds[self.phase.value] = round(seconds.get(self.phase.value, 0.0) + now - self._mark, 4)
        self._mark = now


class CancelWatch:
    """Asks the store whether the job was cancelled, at most every ``interval`` seconds."""

    def __init__(self, services: Services, job_id: str, interval: float = 0.5) -> None:
        self.services, self.job_id, self.interval = services, job_id, interval
        self.event = threading.Event()
        self._checked = 0.0

    def __call__(self) -> bool:
        if self.event.is_set():
            return True
        now = time.monotonic()
        if now - self._checked >= self.interval:
            self._checked = now
            if self.services.job_store.get_job(self.job_id).cancel_requested:
                self.event.set()
        return self.event.is_set()


def run_job(
    services: Services,
    job_id: str,
    *,
    cancel_event: threading.Event | None = None,
    attempt: int | None = None,
    worker: dict[str, str] | None = None,
) -> Job:
    """Run attempt ``attempt`` (default: the current one) of a claimed job to its end.

    ``worker`` (``{"id", "host"}``) is recorded in the job's metrics by executors whose
    workers live on other machines."""
    job = services.job_store.get_job(job_id)
    if job.status != JobStatus.RUNNING or (attempt is not None and job.attempts != attempt):
        return job
    state = RunState(job=job, attempt=job.attempts)
    if worker:
        state.metrics["worker"] = dict(worker)
    watch = CancelWatch(services, job_id)
    if cancel_event is not None:
        watch.event = cancel_event
    try:
        _run_phases(services, state, watch)
        outcome = (JobStatus.SUCCESSFUL, None, None, "finished")
    except JobFailed as failure:
        outcome = (failure.status, failure.reason, failure.phase, failure.message)
    except Exception as exc:  # a bug in opendps must still end the job
        log.exception("job %s: runner crashed", job_id, extra={"action": "runner_crashed"})
        outcome = (
            JobStatus.FAILED,
            Reason.WORKER_LOST,
            _phase_of(state),
            f"internal error in the runner: {exc!r}",
        )
    return _finish(services, state, *outcome)


def _phase_of(state: RunState) -> Phase:
    return state.phase


def _run_phases(services: Services, state: RunState, watch: CancelWatch) -> None:
    settings = services.settings
    job = state.job
    state.metrics.update(services.sandbox.facts())  # on every job, also one that fails early
    algorithm = services.catalog.get_algorithm_by_id(job.algorithm_id)
    spec = AlgorithmSpec.model_validate(algorithm.spec)
    build = algorithm.build
    state.enter(Phase.BUILD)
    if build is None or build.status != BuildStatus.READY:
        raise JobFailed(
            JobStatus.FAILED,
            Reason.BUILD_ERROR,
            Phase.BUILD,
            f"the build of {algorithm.process_id} is not ready "
            f"({build.status.value if build else 'missing'}): "
            f"{(build.message if build else '') or ''}".rstrip(": "),
        )
    state.metrics["build_commit"] = build.commit
    local = _local_build(services, algorithm, spec, build)
    state.metrics["build"] = {"commit": build.commit, "source": local.source}
    state.image = build.image  # where the job runs, said on every job (DESIGN §15)
    state.metrics["container"] = build.container or (
        "host (no docker_container_url)" if not spec.cwl else "cwltool"
    )

    work = prepare_workdir(settings.jobs_dir / job.id, job)
    state.work = work

    state.enter(Phase.LOCALIZE)
    _check_disk_space(services, state, spec)
    _localize(services, state, spec, watch)
    _check_cancel(watch, Phase.LOCALIZE)

    state.enter(Phase.RUN)
    _execute(services, state, spec, local.algorithm_dir, local.env_dir, watch)


def _local_build(services: Services, algorithm: Any, spec: AlgorithmSpec, build: Any) -> Any:
    """The build in this data dir; a worker without the registered one rebuilds it at the
    recorded commit (registry/local_build.py)."""
    from opendps.registry.local_build import ensure_local_build

    try:
        return ensure_local_build(services, algorithm, spec, build)
    except OpenDPSError as exc:
        raise JobFailed(
            JobStatus.FAILED,
            Reason.BUILD_ERROR,
            Phase.BUILD,
            f"rebuilding {algorithm.process_id} at {build.commit} here failed: {exc.message}",
        )


def _check_cancel(watch: CancelWatch, phase: Phase) -> None:
    if watch():
        raise JobFailed(JobStatus.DISMISSED, Reason.CANCELLED, phase, "cancelled by request")


def _localize(services: Services, state: RunState, spec: AlgorithmSpec, watch: CancelWatch) -> None:
    from opendps.errors import LocalizeError
    from opendps.net.safety import UrlPolicy
    from opendps.runner.localize import localize_inputs
    from opendps.storage import storage_options

    settings = services.settings
    file_inputs = {i.name: state.job.inputs.get(i.name) for i in spec.inputs_of("file")}
    file_inputs = {k: v for k, v in file_inputs.items() if v not in (None, "", [])}
    if not file_inputs:
        state.metrics["localize"] = {"files": 0, "bytes": 0, "seconds": 0.0}
        return
    assert state.work is not None
    try:
        report = localize_inputs(
            file_inputs,
            state.work.input,
            settings.cache_dir,
            tries=settings.download_tries,
            timeout=settings.download_timeout,
            deadline=time.monotonic() + settings.localize_time_limit,
            storage_options=storage_options(settings),
            should_cancel=watch,
            policy=UrlPolicy.from_settings(settings),
        )
    except LocalizeError as exc:
        _check_cancel(watch, Phase.LOCALIZE)
        raise JobFailed(JobStatus.FAILED, Reason.LOCALIZE_ERROR, Phase.LOCALIZE, exc.message)
    state.metrics["localize"] = {
        "files": len(report.downloads),
        "bytes": report.total_bytes,
        "seconds": round(report.seconds, 3),
        "rate_bytes_per_second": round(report.rate, 1),
        "cached": sum(1 for d in report.downloads if d.cached),
        "downloads": [
            {
                "input": d.input,
                "url": d.url,
                "file": d.path.name,
                "bytes": d.bytes,
                "seconds": round(d.seconds, 3),
                "cached": d.cached,
                "attempts": d.attempts,
            }
            for d in report.downloads
        ],
    }


def _disk_space(spec: AlgorithmSpec) -> int | None:
    """The registration's ``disk_space`` in bytes (None: not given or not a size)."""
    from opendps.settings import parse_size

    try:
        return parse_size(spec.disk_space) if spec.disk_space else None
    except ValueError:
        return None


def _check_disk_space(services: Services, state: RunState, spec: AlgorithmSpec) -> None:
    """``disk_space`` of the registration must be free before the job starts; old cache
    entries and old finished jobs' work dirs make room first (oldest first). The run is
    then held to it (runner/execute.py ``disk_limit``)."""
    from opendps.runner.diskspace import DiskShortage, ensure_free_space

    needed = _disk_space(spec)
    if not needed:
        return
    assert state.work is not None
    try:
        report = ensure_free_space(services, state.work.root, needed)
    except DiskShortage as exc:
        raise JobFailed(JobStatus.FAILED, Reason.LOCALIZE_ERROR, Phase.LOCALIZE, str(exc))
    state.metrics["disk_space"] = report


def job_environment(
    services: Services, job: Job, work: WorkDir, env_dir: str | None
) -> dict[str, str]:
    """The run contract's environment (DESIGN §4, §12): the host allowlist, the algorithm's
    build environment and the contract's variables — never the server's DPS_* settings or
    credentials."""
    from opendps.registry.environment import algorithm_environment

    base = services.sandbox.base_environment()
    env = algorithm_environment(Path(env_dir) if env_dir else None, base)
    token = services.identity.job_token(job.id)
    api_url = (services.settings.base_url or "").rstrip("/")
    env.update(
        HOME=str(work.home),
        DPS_JOB_ID=job.id,
        DPS_INPUT_DIR=str(work.input),
        DPS_OUTPUT_DIR=str(work.output),
        DPS_WORK_DIR=str(work.root),
        DPS_API_URL=api_url,
        DPS_JOB_TOKEN=token,
        MAAP_API_HOST=api_url,
        MAAP_PGT=token,
        PYTHONUNBUFFERED="1",
    )
    return env


def _execute(
    services: Services,
    state: RunState,
    spec: AlgorithmSpec,
    algorithm_dir: str | None,
    env_dir: str | None,
    watch: CancelWatch,
) -> None:
    from opendps.registry.build import resolve_run_command
    from opendps.registry.environment import write_login_profile

    settings = services.settings
    job, work = state.job, state.work
    assert work is not None
    queue = settings.queue(job.queue)
    env = job_environment(services, job, work, env_dir)
    write_login_profile(work.home, env)
    if spec.builtin_module:
        argv = [os.environ.get("DPS_PYTHON", _python()), "-m", spec.builtin_module]
        env["PYTHONPATH"] = _opendps_path()
    elif spec.cwl:
        from opendps.runner.cwl_exec import prepare_cwl_run

        try:
            argv, notes, where = prepare_cwl_run(
                spec, job, work, os.environ.get("DPS_PYTHON", _python()), settings
            )
        except OpenDPSError as exc:  # container_fallback: refuse, and an image it cannot use
            raise JobFailed(JobStatus.FAILED, Reason.BUILD_ERROR, Phase.RUN, exc.message)
        state.warnings.extend(notes)
        env["PYTHONPATH"] = _opendps_path()
        state.metrics["container"] = where
        # cwltool starts rootful podman for each tool, which cannot run inside the job's
        # box: the container is the tool's box then (docs/security.md says so).
        state.unboxed = where.startswith("podman")
    else:
        try:
            argv = resolve_run_command(spec, Path(algorithm_dir or ""))
        except OpenDPSError as exc:
            raise JobFailed(JobStatus.FAILED, Reason.BUILD_ERROR, Phase.RUN, exc.message)
        argv += positional_args(spec, job.inputs)
    build_dir = Path(algorithm_dir).parent if algorithm_dir else None
    disk = _disk_space(spec)
    try:
        result = _start_execute(services, state, argv, env, queue, watch, build_dir, disk)
    except OSError as exc:  # e.g. a shebang naming an interpreter that does not exist
        raise JobFailed(
            JobStatus.FAILED,
            Reason.EXIT_CODE,
            Phase.RUN,
            f"the run command could not be started: {exc}",
        )
    state.exit_code = result.exit_code
    state.metrics.update(
        exit_code=result.exit_code,
        signal=result.signal,
        run_wall_seconds=round(result.wall_seconds, 3),
        cpu_user_seconds=round(result.cpu_user, 3),
        cpu_system_seconds=round(result.cpu_system, 3),
        peak_memory_bytes=result.peak_memory,
        peak_processes=result.peak_processes,
        memory_enforcement=result.memory_enforcement,
        time_limit_seconds=queue.time_limit if queue else None,
        memory_limit_bytes=queue.memory if queue else None,
    )
    if result.cancelled:
        raise JobFailed(JobStatus.DISMISSED, Reason.CANCELLED, Phase.RUN, "cancelled by request")
    if result.timed_out:
        raise JobFailed(
            JobStatus.FAILED,
            Reason.TIMEOUT,
            Phase.RUN,
            f"killed after the queue's time limit of {queue.time_limit:g} s"
            if queue and queue.time_limit
            else "killed after its time limit",
        )
    if result.oom:
        raise JobFailed(JobStatus.FAILED, Reason.OOM, Phase.RUN, oom_message(services, queue))
    if result.disk_exceeded and disk:
        from opendps.settings import format_size

        raise JobFailed(
            JobStatus.FAILED,
            Reason.EXIT_CODE,
            Phase.RUN,
            f"stopped: its work dir grew past the algorithm's disk_space ({format_size(disk)})",
        )
    if result.exit_code != 0:
        how = (
            f"exit code {result.exit_code}"
            if result.exit_code is not None
            else f"signal {result.signal}"
        )
        raise JobFailed(
            JobStatus.FAILED,
            Reason.EXIT_CODE,
            Phase.RUN,
            f"the run command ended with {how}; see stderr",
        )
    handle = open_in_work_dir(work.output, RESULTS_FILE)  # a link is not followed
    if handle is not None:
        try:
            with handle:
                state.results = json.loads(handle.read())
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            state.warnings.append(f"{RESULTS_FILE} is not valid JSON: {exc}")


def _start_execute(
    services: Services,
    state: RunState,
    argv: list[str],
    env: dict[str, str],
    queue: Any,
    watch: CancelWatch,
    build_dir: Path | None,
    disk: int | None = None,
) -> Any:
    """Box the command (runner/sandbox.py), hand the work dir over, run, take it back."""
    from opendps.runner.execute import execute
    from opendps.runner.sampling import SampleRecorder
    from opendps.runner.sandbox import BWRAP
    from opendps.runner.workdir import hand_over, take_back

    work = state.work
    assert work is not None
    if state.image:  # built into a container image (registry/images.py): run in it
        try:
            return _execute_in_image(services, state, argv, env, queue, watch)
        finally:
            _record_run_end(services, state)
    sandbox = services.sandbox
    network = queue.network if queue else True
    box = sandbox.box(work.root, [build_dir] if build_dir else [], network=network)
    if state.unboxed:
        from opendps.runner.sandbox import PROCESS, box_launch

        launch = box_launch(PROCESS, box, argv, env, user=None)
        state.metrics.update(isolation="podman (cwltool)", job_user=None, network=network)
    else:
        launch = sandbox.launch(box, argv, env)
        state.metrics.update(sandbox.facts(), network=network)
    handed_over = sandbox.user is not None and not state.unboxed
    series = SampleRecorder(lambda s: services.samples.save_samples(state.job.id, s))
    if handed_over:
        hand_over(work.root, sandbox.user.uid, sandbox.user.gid)
    try:
        result = execute(
            launch.argv,
            cwd=launch.cwd,
            env=launch.env,
            stdout_path=work.stdout,
            stderr_path=work.stderr,
            time_limit=queue.time_limit if queue else None,
            memory_limit=queue.memory if queue else None,
            cpus=queue.cpus if queue else None,
            max_processes=queue.max_processes if queue else None,
            user=launch.user,
            boxed=launch.isolation == BWRAP,
            kill_grace=services.settings.kill_grace,
            should_cancel=watch,
            cancel_event=watch.event,
            job_id=state.job.id,
            disk_limit=(work.root, disk) if disk else None,
            on_start=lambda pid: _record_run_start(services, state, pid),
            on_sample=series.observe,
        )
        series.flush()  # the memory/CPU series of the job page's chart
        return result
    finally:
        _record_run_end(services, state)
        if handed_over:
            removed = take_back(work.root)
            state.warnings.extend(f"removed from the work dir: {r}" for r in removed)


def _execute_in_image(
    services: Services,
    state: RunState,
    argv: list[str],
    env: dict[str, str],
    queue: Any,
    watch: CancelWatch,
) -> Any:
    from opendps.registry.environment import write_login_profile
    from opendps.runner.container import (
        ContainerUnavailable,
        container_env,
        execute_job_in_image,
    )

    work = state.work
    assert work is not None and state.image is not None
    # The image's PATH (a conda base, say) must survive a login shell: no host PATH here.
    write_login_profile(work.home, container_env(env))
    try:
        return execute_job_in_image(
            services.settings,
            state.image,
            argv,
            job_id=state.job.id,
            work_dir=work.root,
            env=env,
            stdout_path=work.stdout,
            stderr_path=work.stderr,
            queue=queue,
            should_cancel=watch,
            cancel_event=watch.event,
            on_start=lambda pid: _record_run_start(services, state, pid),
            storage=services.storage,
        )
    except ContainerUnavailable as exc:
        raise JobFailed(JobStatus.FAILED, Reason.BUILD_ERROR, Phase.RUN, exc.message)


def _record_run_start(services: Services, state: RunState, pid: int) -> None:
    """The run's pid, start time and cgroup go to the store (recovery ends it by them)."""
    import psutil

    from opendps.runner import limits

    try:
        started = psutil.Process(pid).create_time()
    except psutil.Error:
        started = time.time()
    group = limits.find_job_cgroup(state.job.id)
    paths = [str(p) for p in group.all_paths] if group is not None else []
    state.metrics["limits"] = group.controllers() if group is not None else []
    try:
        services.job_store.record_run_start(state.job.id, state.attempt, pid, started, paths)
    except Exception as exc:  # the run goes on; recovery falls back to the cgroup name
        log.warning("job %s: cannot record the run's pid: %s", state.job.id, exc)


def _record_run_end(services: Services, state: RunState) -> None:
    try:
        services.job_store.record_run_end(state.job.id, state.attempt)
    except Exception as exc:
        log.warning("job %s: cannot record the run's end: %s", state.job.id, exc)


def oom_message(services: Services, queue: Any) -> str:
    """Names the limit and the next bigger queue, if there is one."""
    from opendps.settings import format_size

    if not queue or not queue.memory:
        return "killed for running out of memory"
    message = (
        f"killed for using more than the memory limit of queue {queue.name} "
        f"({format_size(queue.memory)})"
    )
    bigger = sorted(
        (q for q in services.settings.queues if q.memory and q.memory > queue.memory),
        key=lambda q: q.memory,
    )
    if bigger:
        message += f"; the next bigger queue is {bigger[0].name} ({format_size(bigger[0].memory)})"
    else:
        message += "; there is no queue with more memory"
    return message


def _opendps_path() -> str:
    """Where opendps is imported from, for built-in processes run in the box."""
    import opendps

    return str(Path(opendps.__file__).parent.parent)


def _python() -> str:
    import sys

    return sys.executable


def _stage(services: Services, state: RunState) -> None:
    """Copy the logs into output/ and upload output/ to storage (also for failed jobs),
    within ``stage_time_limit``."""
    from opendps.service.jobs import output_prefix

    work = state.work
    if work is None:
        return
    secret_values = services.secrets.values(state.job.owner)
    for path in (work.stdout, work.stderr):
        mask_secrets(path, secret_values)
        if path.is_file() and not path.is_symlink():
            shutil.copyfile(path, work.output / path.name)
    started = time.monotonic()
    job = state.job
    metadata = {  # on each staged object (S3), so a bucket listing says whose it is
        "dps-user": job.owner,
        "dps-algorithm": job.algorithm,
        "dps-version": job.version,
        "dps-job-id": job.id,
        "dps-tag": job.tag or "",
    }
    prefix = output_prefix(job)
    files = _within(
        services.settings.stage_time_limit,
        lambda: services.storage.put_dir(work.output, prefix, metadata),
        "uploading the outputs",
    )
    state.metrics["stage"] = {
        "files": len(files),
        "bytes": sum(f.size for f in files),
        "seconds": round(time.monotonic() - started, 3),
    }


def _within(limit: float | None, work: Any, what: str) -> Any:
    """Run ``work()`` in a thread; raise TimeoutError if it takes longer than ``limit``.

    An upload cannot be interrupted from outside, so a late one is left to finish in the
    background (the supervisor process ends right after the job does)."""
    if not limit:
        return work()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="dps-stage", daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        raise TimeoutError(f"{what} took longer than stage_time_limit ({limit:g} s)")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _finish(
    services: Services,
    state: RunState,
    status: JobStatus,
    reason: Reason | None,
    phase: Phase | None,
    message: str,
) -> Job:
    """Stage, then the one final store write of this attempt (fenced by its number).

    Nothing here re-queues: once the run command started, a staging failure ends the job
    with ``upload_error`` and a store that refuses the final write leaves the attempt marked
    "run ended", which recovery turns into ``worker_lost`` instead of a second run.
    """
    from opendps.runner.hostinfo import host_facts

    job = state.job
    if _superseded(services, job):  # re-run elsewhere meanwhile: stage nothing, write nothing
        return services.job_store.get_job(job.id)
    fields: dict[str, Any] = {"output_url": None}
    if state.work is not None:
        state.enter(Phase.STAGE)
        try:
            state.metrics["work_dir_bytes"] = state.work.size()
            _stage(services, state)
            fields["output_url"] = _output_url(services, job)
        except Exception as exc:
            log.warning("job %s: staging failed: %s", job.id, exc, extra={"action": "stage_failed"})
            if status == JobStatus.SUCCESSFUL:
                status, reason, phase = JobStatus.FAILED, Reason.UPLOAD_ERROR, Phase.STAGE
                message = f"uploading outputs failed: {exc}"
            else:
                state.warnings.append(f"uploading outputs failed: {exc}")
    state.close_phase()
    try:
        state.metrics["host"] = host_facts()
    except Exception:  # facts are nice to have
        pass
    fields.update(
        metrics=state.metrics,
        exit_code=state.exit_code,
        results=state.results,
        warnings=state.warnings,
        progress=100 if status == JobStatus.SUCCESSFUL else None,
    )
    # Everything is staged; failed jobs' work dirs are kept for debugging.
    keep = services.settings.keep_work_dirs
    if state.work is not None:
        fields["work_dir"] = str(state.work.root)
    if state.work is not None and status == JobStatus.SUCCESSFUL and not keep:
        state.work.remove()
        fields["work_dir"] = None
    return _final_write(services, state, status, reason, phase, message, fields)


def _output_url(services: Services, job: Job) -> str:
    from opendps.service.jobs import output_prefix

    return services.storage.url_for(output_prefix(job))


#: Tries of the final store write (a database restart should not lose a finished job).
FINAL_WRITE_TRIES = 5


def _final_write(
    services: Services,
    state: RunState,
    status: JobStatus,
    reason: Reason | None,
    phase: Phase | None,
    message: str,
    fields: dict[str, Any],
) -> Job:
    store = services.job_store
    for attempt in range(FINAL_WRITE_TRIES):
        try:
            return store.transition(
                state.job.id,
                status,
                allowed_from=[JobStatus.RUNNING],
                reason=reason,
                phase=phase,
                message=message,
                attempt=state.attempt,
                **fields,
            )
        except InvalidTransition:  # someone else ended it (recovery); keep their verdict
            return store.get_job(state.job.id)
        except Exception as exc:
            if attempt == FINAL_WRITE_TRIES - 1:
                raise
            log.warning("job %s: final store write failed (%s); retrying", state.job.id, exc)
            time.sleep(min(0.2 * 2**attempt, 3.0))
    raise AssertionError("unreachable")


def _superseded(services: Services, job: Job) -> bool:
    """Whether the job left this attempt (recovered as lost, re-queued, ended)."""
    current = services.job_store.get_job(job.id)
    return current.status != JobStatus.RUNNING or current.attempts != job.attempts

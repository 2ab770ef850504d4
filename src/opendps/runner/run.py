"""run_job: the one code path that runs a claimed job, whichever executor called it.

claimed (running) -> build check -> prepare work dir -> localize -> execute -> stage -> finish.
Every path ends in a terminal state with ``reason`` and ``phase`` (DESIGN §3).
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
    work: WorkDir | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None
    results: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
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


def run_job(services: Services, job_id: str, *, cancel_event: threading.Event | None = None) -> Job:
    """Run a job that is already ``running`` (claimed) to a terminal state."""
    job = services.job_store.get_job(job_id)
    if job.status != JobStatus.RUNNING:
        return job
    state = RunState(job=job)
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

    work = prepare_workdir(settings.jobs_dir / job.id, job)
    state.work = work

    state.enter(Phase.LOCALIZE)
    _localize(services, state, spec, watch)
    _check_cancel(watch, Phase.LOCALIZE)

    state.enter(Phase.RUN)
    _execute(services, state, spec, build.algorithm_dir, build.env_dir, watch)


def _check_cancel(watch: CancelWatch, phase: Phase) -> None:
    if watch():
        raise JobFailed(JobStatus.DISMISSED, Reason.CANCELLED, phase, "cancelled by request")


def _localize(services: Services, state: RunState, spec: AlgorithmSpec, watch: CancelWatch) -> None:
    from opendps.errors import LocalizeError
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


def job_environment(
    services: Services, job: Job, work: WorkDir, env_dir: str | None
) -> dict[str, str]:
    """The run contract's environment (DESIGN §4)."""
    from opendps.registry.environment import algorithm_environment

    base = {k: v for k, v in os.environ.items() if not k.startswith("DPS_") or k == "DPS_URL"}
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
    elif spec.cwl:
        from opendps.runner.cwl_exec import prepare_cwl_run

        argv, notes = prepare_cwl_run(spec, job, work, os.environ.get("DPS_PYTHON", _python()))
        state.warnings.extend(notes)
    else:
        try:
            argv = resolve_run_command(spec, Path(algorithm_dir or ""))
        except OpenDPSError as exc:
            raise JobFailed(JobStatus.FAILED, Reason.BUILD_ERROR, Phase.RUN, exc.message)
        argv += positional_args(spec, job.inputs)
    try:
        result = _start_execute(services, state, argv, env, queue, watch)
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
        raise JobFailed(
            JobStatus.FAILED,
            Reason.OOM,
            Phase.RUN,
            f"killed for using more than the queue's memory limit ({queue.memory} bytes)"
            if queue and queue.memory
            else "killed for running out of memory",
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
    results_file = work.output / RESULTS_FILE
    if results_file.exists():
        try:
            state.results = json.loads(results_file.read_text())
        except json.JSONDecodeError as exc:
            state.warnings.append(f"{RESULTS_FILE} is not valid JSON: {exc}")


def _start_execute(
    services: Services,
    state: RunState,
    argv: list[str],
    env: dict[str, str],
    queue: Any,
    watch: CancelWatch,
) -> Any:
    from opendps.runner.execute import execute
    from opendps.runner.sampling import SampleRecorder

    work = state.work
    assert work is not None
    series = SampleRecorder(lambda s: services.samples.save_samples(state.job.id, s))
    result = execute(
        argv,
        cwd=work.root,
        env=env,
        stdout_path=work.stdout,
        stderr_path=work.stderr,
        time_limit=queue.time_limit if queue else None,
        memory_limit=queue.memory if queue else None,
        kill_grace=services.settings.kill_grace,
        should_cancel=watch,
        cancel_event=watch.event,
        job_id=state.job.id,
        on_start=lambda pid: _record_run_pid(work, pid),
        on_sample=series.observe,
    )
    series.flush()  # the memory/CPU series of the job page's chart
    return result


def _record_run_pid(work: WorkDir, pid: int) -> None:
    """Recovery kills this process group if the supervisor dies (executors/recovery.py)."""
    import psutil

    try:
        started = psutil.Process(pid).create_time()
    except psutil.Error:
        return
    (work.root / "_run.pid").write_text(f"{pid} {started}")


def _python() -> str:
    import sys

    return sys.executable


def _stage(services: Services, state: RunState) -> None:
    """Copy the logs into output/ and upload output/ to storage (also for failed jobs)."""
    from opendps.service.jobs import output_prefix

    work = state.work
    if work is None:
        return
    secret_values = services.secrets.values(state.job.owner)
    for path in (work.stdout, work.stderr):
        mask_secrets(path, secret_values)
        if path.exists():
            shutil.copyfile(path, work.output / path.name)
    started = time.monotonic()
    files = services.storage.put_dir(work.output, output_prefix(state.job))
    state.metrics["stage"] = {
        "files": len(files),
        "bytes": sum(f.size for f in files),
        "seconds": round(time.monotonic() - started, 3),
    }


def _finish(
    services: Services,
    state: RunState,
    status: JobStatus,
    reason: Reason | None,
    phase: Phase | None,
    message: str,
) -> Job:
    from opendps.runner.hostinfo import host_facts
    from opendps.service.jobs import output_prefix

    job = state.job
    if state.work is not None:
        state.enter(Phase.STAGE)
        try:
            state.metrics["work_dir_bytes"] = state.work.size()
            _stage(services, state)
        except Exception as exc:
            log.warning("job %s: staging failed: %s", job.id, exc, extra={"action": "stage_failed"})
            if status == JobStatus.SUCCESSFUL:
                status, reason, phase = JobStatus.FAILED, Reason.UPLOAD_ERROR, Phase.STAGE
                message = f"uploading outputs failed: {exc}"
    state.close_phase()
    state.metrics["host"] = host_facts()
    fields: dict[str, Any] = {
        "metrics": state.metrics,
        "exit_code": state.exit_code,
        "results": state.results,
        "warnings": state.warnings,
        "output_url": services.storage.url_for(output_prefix(job)) if state.work else None,
        "progress": 100 if status == JobStatus.SUCCESSFUL else None,
    }
    # Everything is staged; failed jobs' work dirs are kept for debugging.
    keep = services.settings.keep_work_dirs
    if state.work is not None:
        fields["work_dir"] = str(state.work.root)
    if state.work is not None and status == JobStatus.SUCCESSFUL and not keep:
        state.work.remove()
        fields["work_dir"] = None
    try:
        return services.job_store.transition(
            job.id,
            status,
            allowed_from=[JobStatus.RUNNING],
            reason=reason,
            phase=phase,
            message=message,
            **fields,
        )
    except InvalidTransition:  # someone else ended it (recovery); keep their verdict
        return services.job_store.get_job(job.id)

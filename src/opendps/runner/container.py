"""Run a job's command in its algorithm's container image (DESIGN §15), with podman.

``podman run --init`` (PID 1 forwards signals), named ``opendps-job-<job id>``, with

- the work dir mounted at its own path and used as the working directory;
- the run contract's variables (DPS_*, MAAP_*, HOME in the work dir) from an env file
  (so the job token is never on a command line), not the host's PATH or virtualenv;
- the queue's memory (no swap beyond it), CPU and process-count limits;
- ``--network none`` on a ``network: false`` queue, else the host's network (so that
  ``DPS_API_URL`` on 127.0.0.1 reaches this server, as it does for host jobs).

Cancel and time limit stop the container (``podman stop -t kill_grace``); the container is
removed when the run ends. On cgroup v1 hosts the container is placed under a cgroup of
our own (``--cgroup-parent``) that outlives it, so its peak memory, CPU time and OOM kills
are read exactly after the end.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opendps.errors import BuildError
from opendps.registry.images import (
    ULIMITS,
    Podman,
    find_podman,
    image_exists,
    in_image_argv,
    load_image,
)
from opendps.runner import container_cgroup, limits
from opendps.runner.execute import CANCEL_CHECK_INTERVAL, ExecResult

if TYPE_CHECKING:
    from opendps.settings import QueueConfig, Settings
    from opendps.storage.base import Storage

log = logging.getLogger(__name__)

# Variables a container gets from the job's environment; the rest (PATH, VIRTUAL_ENV, the
# host's settings) belongs to the host, the image has its own.
PASSED_PREFIXES = ("DPS_", "MAAP_")
PASSED_NAMES = ("HOME", "PYTHONUNBUFFERED", "LANG", "TZ")
ENFORCEMENT = "container"
PODMAN_TIMEOUT = 60.0  # podman stop / inspect / rm
TICK = 0.1
# dps shell's command inside an image: bash when the image has it, else sh.
SCRIPT_SHELL_INTERACTIVE = (
    "/bin/sh",
    "-c",
    "command -v bash >/dev/null 2>&1 && exec bash; exec sh",
)
DEFAULT_MAX_PROCESSES = 1024  # DESIGN §12's default for queues that set no max_processes


def container_name(job_id: str) -> str:
    return f"opendps-job-{job_id}"


def container_env(env: Mapping[str, str]) -> dict[str, str]:
    return {
        k: v
        for k, v in env.items()
        if k.startswith(PASSED_PREFIXES) or k in PASSED_NAMES or k.startswith("LC_")
    }


def execute_in_container(
    podman: Podman,
    image: str,
    argv: list[str],
    *,
    job_id: str,
    work_dir: Path,
    env: Mapping[str, str],
    stdout_path: Path,
    stderr_path: Path,
    time_limit: float | None = None,
    memory_limit: int | None = None,
    cpus: float | None = None,
    max_processes: int | None = None,
    network: bool = True,
    kill_grace: float = 5.0,
    should_cancel: Callable[[], bool] | None = None,
    cancel_event: threading.Event | None = None,
    on_start: Callable[[int], None] | None = None,
) -> ExecResult:
    """Run ``argv`` in ``image`` to its end (or its limit, or a cancel) and measure it."""
    name = container_name(job_id)
    remove_container(podman, name)  # left by an earlier attempt whose supervisor died
    # On v1 the memory limit is set on our cgroup around the container: the kernel then
    # counts the OOM kill there, where we can read it after the container is gone.
    group = (
        limits.create_job_cgroup(f"ctr-{job_id}", memory_limit)
        if container_cgroup.is_v1()
        else None
    )
    with tempfile.NamedTemporaryFile("w", prefix="dps-env-", suffix=".env") as env_file:
        write_env_file(env_file, env)
        command = podman.command(
            "run",
            "--name",
            name,
            *run_options(
                work_dir,
                Path(env_file.name),
                network=network,
                memory_limit=None if group is not None else memory_limit,
                cpus=cpus,
                max_processes=max_processes,
            ),
            *(
                ["--cgroup-parent", container_cgroup.parent_path(group)]
                if group is not None
                else []
            ),
            image,
            *in_image_argv(argv),
        )
        started, t0 = time.time(), time.monotonic()
        try:
            with open(stdout_path, "ab") as out, open(stderr_path, "ab") as err:
                process = subprocess.Popen(
                    command,
                    stdout=out,
                    stderr=err,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
        except OSError:
            if group is not None:
                container_cgroup.remove_group(group)
            raise
        try:
            if on_start is not None:
                on_start(process.pid)
            stop, peak_processes = _supervise(
                process, group, t0, time_limit, should_cancel, cancel_event
            )
            if stop is not None:
                stop_container(podman, name, kill_grace)
            code = process.wait()
        except BaseException:
            stop_container(podman, name, 0)
            process.wait()
            remove_container(podman, name)
            if group is not None:
                container_cgroup.remove_group(group)
            raise
    wall = time.monotonic() - t0
    oom_flag = _inspect_oom(podman, name)
    remove_container(podman, name)
    try:
        return _result(code, stop, oom_flag, group, peak_processes, started, wall)
    finally:
        if group is not None:
            container_cgroup.remove_group(group)


def write_env_file(handle: Any, env: Mapping[str, str]) -> None:
    """The container's variables (see PASSED_PREFIXES) as a podman ``--env-file``."""
    for key, value in container_env(env).items():
        if "\n" not in value:
            handle.write(f"{key}={value}\n")
    handle.flush()


def run_options(
    work_dir: Path,
    env_file: Path,
    *,
    network: bool,
    memory_limit: int | None,
    cpus: float | None,
    max_processes: int | None,
) -> list[str]:
    """``podman run`` options of every job container (and of ``dps shell``)."""
    return [
        "--init",
        "--env-file",
        str(env_file),
        "--volume",
        f"{work_dir}:{work_dir}",
        "--workdir",
        str(work_dir),
        "--network",
        "host" if network else "none",
        "--security-opt",
        "no-new-privileges",
        *ULIMITS,
        *_limits(memory_limit, cpus, max_processes),
    ]


def _limits(memory: int | None, cpus: float | None, max_processes: int | None) -> list[str]:
    flags: list[str] = []
    if memory:
        flags += ["--memory", str(int(memory)), "--memory-swap", str(int(memory))]
    if cpus:
        flags += ["--cpus", f"{float(cpus):g}"]
    if max_processes:
        flags += ["--pids-limit", str(int(max_processes))]
    return flags


def _supervise(
    process: subprocess.Popen[bytes],
    group: limits.JobCgroup | None,
    t0: float,
    time_limit: float | None,
    should_cancel: Callable[[], bool] | None,
    cancel_event: threading.Event | None,
) -> tuple[str | None, int]:
    """Wait for ``podman run``; answers ("timeout"|"cancel"|None, peak process count)."""
    deadline = t0 + time_limit if time_limit else None
    next_ask = t0 + CANCEL_CHECK_INTERVAL
    peak = 1
    while True:
        try:
            process.wait(TICK)
            return None, peak
        except subprocess.TimeoutExpired:
            pass
        peak = max(peak, container_cgroup.pids_current(group))
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return "timeout", peak
        if cancel_event is not None and cancel_event.is_set():
            return "cancel", peak
        if should_cancel is not None and now >= next_ask:
            next_ask = now + CANCEL_CHECK_INTERVAL
            try:
                if should_cancel():
                    return "cancel", peak
            except Exception as exc:  # a store hiccup must not end a running job
                log.warning("cancel check failed: %s", exc)


def _result(
    code: int,
    stop: str | None,
    oom_flag: bool,
    group: limits.JobCgroup | None,
    peak_processes: int,
    started: float,
    wall: float,
) -> ExecResult:
    # Some kernels count the OOM kill only in the container's own cgroup (gone by now): a
    # SIGKILL nobody sent, in a cgroup that hit its limit, is the OOM killer too.
    hit_limit = group is not None and container_cgroup.failcnt(group) > 0
    oom = (
        oom_flag
        or (group is not None and group.oom_kills() > 0)
        or (code == 128 + 9 and stop is None and hit_limit)
    )
    killed = code > 128 and (stop is not None or oom)
    user, system = container_cgroup.cpu_seconds(group)
    return ExecResult(
        exit_code=None if killed else code,
        signal=code - 128 if killed else None,
        timed_out=stop == "timeout",
        cancelled=stop == "cancel",
        oom=oom,
        wall_seconds=wall,
        cpu_user=user,
        cpu_system=system,
        peak_memory=(group.peak_memory() or 0) if group is not None else 0,
        peak_processes=peak_processes,
        memory_enforcement=ENFORCEMENT,
        started=started,
        finished=started + wall,
    )


# -- podman ------------------------------------------------------------------------------


def stop_container(podman: Podman, name: str, grace: float) -> None:
    """SIGTERM to the container's PID 1 (``--init`` forwards it), SIGKILL after ``grace``."""
    _quiet(podman.command("stop", "--time", str(max(int(grace), 0)), name), grace)


def remove_container(podman: Podman, name: str) -> None:
    _quiet(podman.command("rm", "--force", "--time", "0", name), 0)


def container_exists(podman: Podman, name: str) -> bool:
    done = _quiet(podman.command("container", "exists", name), 0)
    return done is not None and done.returncode == 0


def _inspect_oom(podman: Podman, name: str) -> bool:
    done = _quiet(podman.command("inspect", "--format", "{{.State.OOMKilled}}", name), 0)
    return done is not None and done.stdout.strip() == "true"


def _quiet(argv: list[str], grace: float) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=PODMAN_TIMEOUT + grace)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("%s failed: %s", " ".join(argv[:3]), exc)
        return None


def remove_job_container(settings: Settings, job_id: str) -> None:
    """Remove the job's container if one is left (its supervisor died): recovery's hook."""
    podman, _ = find_podman(settings)
    if podman is not None and container_exists(podman, container_name(job_id)):
        remove_container(podman, container_name(job_id))


# -- the runner's entry point --------------------------------------------------------------


class ContainerUnavailable(BuildError):
    """The job's image cannot be run on this host."""


def execute_job_in_image(
    settings: Settings,
    image: str,
    argv: list[str],
    *,
    job_id: str,
    work_dir: Path,
    env: Mapping[str, str],
    stdout_path: Path,
    stderr_path: Path,
    queue: QueueConfig | None,
    should_cancel: Callable[[], bool] | None,
    cancel_event: threading.Event | None,
    on_start: Callable[[int], None] | None,
    storage: Storage | None = None,
) -> ExecResult:
    """The runner's hook: run the job in ``image`` with its queue's limits. An image this
    host lacks is loaded from ``storage`` when its build saved it there (scale-out)."""
    podman, why = find_podman(settings)
    if podman is None:
        raise ContainerUnavailable(f"the job's image {image} cannot run here: {why}")
    if not image_exists(podman, image) and not (
        storage is not None and load_image(podman, image, storage, work_dir / "tmp")
    ):
        raise ContainerUnavailable(f"the job's image {image} is not on this host")
    return execute_in_container(
        podman,
        image,
        argv,
        job_id=job_id,
        work_dir=work_dir,
        env=env,
        stdout_path=stdout_path,
        stderr_path=stderr_path,
        time_limit=queue.time_limit if queue else None,
        memory_limit=queue.memory if queue else None,
        cpus=queue.cpus if queue else None,
        max_processes=getattr(queue, "max_processes", None) or DEFAULT_MAX_PROCESSES,
        network=bool(getattr(queue, "network", True)),
        kill_grace=settings.kill_grace,
        should_cancel=should_cancel,
        cancel_event=cancel_event,
        on_start=on_start,
    )

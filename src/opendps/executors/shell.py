"""``dps shell ALGORITHM_FILE``: a shell in exactly the job's environment, for debugging
(Cumulus' ``docker compose run bash``).

The algorithm is built as for ``dps test`` (the working tree of its repository), a job is
submitted and claimed as for ``dps run-local``, its work dir is prepared and its inputs are
localized by the runner's own phases; then, instead of the run command, a shell starts in
the work dir with the job's environment — in the algorithm's container image when it has
one (``podman run -i``, ``-t`` on a terminal, the job's limits and network), else on the
host. The shell's stdin/stdout are this terminal's. When it exits the job ends
``dismissed`` ("shell session") and the work dir is kept.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opendps.errors import InvalidTransition, OpenDPSError
from opendps.executors.local_run import (
    Progress,
    _clear_leftovers,
    _data_dir_lock,
    _submit,
    build_locally,
    claim,
    local_settings,
    read_package,
)
from opendps.models import JobStatus, Phase, Reason
from opendps.registry.worktree import repository_top
from opendps.service.context import Services


@dataclass(frozen=True)
class ShellSession:
    job_id: str
    work_dir: Path
    exit_code: int
    where: str  # "podman <image>" or "host"


def open_shell(
    algorithm_file: Path | str,
    inputs: Mapping[str, Any] | None = None,
    *,
    queue: str | None = None,
    data_dir: Path | str | None = None,
    config: Path | str | None = None,
    rebuild: bool = False,
    on_progress: Progress | None = None,
) -> ShellSession:
    """Build, prepare a job's work dir and inputs, and run an interactive shell in it."""
    from opendps.runner.run import CancelWatch, RunState, _localize, job_environment
    from opendps.runner.workdir import prepare_workdir

    say = on_progress or (lambda _message: None)
    settings = local_settings(data_dir, None, config)
    package = read_package(Path(algorithm_file))
    spec = package.spec
    tree = repository_top(Path(algorithm_file).resolve())
    services = Services(settings)
    try:
        services.catalog.sync_queues(settings.queues)
        with _data_dir_lock(settings.data_dir, say):
            _clear_leftovers(services)
            algorithm, _, _ = build_locally(services, package, tree, rebuild, say)
            job = claim(services, _submit(services, algorithm, spec, inputs or {}, queue, None))
            if job.status.terminal:
                raise OpenDPSError(f"job {job.id} ended at once: {job.message}")
            build = algorithm.build
            assert build is not None
            work = prepare_workdir(settings.jobs_dir / job.id, job)
            state = RunState(job=job, work=work)
            try:
                _localize(services, state, spec, CancelWatch(services, job.id))
            except Exception:
                _end(services, job.id, "inputs could not be localized")
                raise
            env = job_environment(services, job, work, build.env_dir)
            from opendps.registry.environment import write_login_profile

            write_login_profile(work.home, env)
            say(
                f"work dir {work.root} (input/, output/), the algorithm in "
                f"{build.algorithm_dir}; exit the shell to end the session"
            )
            if build.image:
                code = _container_shell(services, build.image, job.queue, work.root, env)
                where = f"podman {build.image}"
            else:
                code = _host_shell(work.root, env)
                where = "host"
            _end(services, job.id, f"dps shell session ended (exit {code})")
            return ShellSession(job.id, work.root, code, where)
    finally:
        services.close()


def _host_shell(work_dir: Path, env: dict[str, str]) -> int:
    shell = shutil.which("bash", path=env.get("PATH")) or "/bin/sh"
    return subprocess.call([shell], cwd=work_dir, env=env)


def _container_shell(
    services: Services, image: str, queue_name: str, work_dir: Path, env: dict[str, str]
) -> int:
    from opendps.registry.images import find_podman
    from opendps.runner.container import (
        DEFAULT_MAX_PROCESSES,
        SCRIPT_SHELL_INTERACTIVE,
        run_options,
        write_env_file,
    )

    podman, why = find_podman(services.settings)
    if podman is None:
        raise OpenDPSError(f"the algorithm's image {image} cannot run here: {why}")
    queue = services.settings.queue(queue_name)
    with tempfile.NamedTemporaryFile("w", prefix="dps-env-", suffix=".env") as env_file:
        write_env_file(env_file, env)
        options = run_options(
            work_dir,
            Path(env_file.name),
            network=bool(getattr(queue, "network", True)),
            memory_limit=queue.memory if queue else None,
            cpus=queue.cpus if queue else None,
            max_processes=getattr(queue, "max_processes", None) or DEFAULT_MAX_PROCESSES,
        )
        tty = ["-t"] if sys.stdin.isatty() else []
        argv = podman.command("run", "--rm", "-i", *tty, *options, image, *SCRIPT_SHELL_INTERACTIVE)
        return subprocess.call(argv)


def _end(services: Services, job_id: str, message: str) -> None:
    try:
        services.job_store.transition(
            job_id,
            JobStatus.DISMISSED,
            allowed_from=[JobStatus.RUNNING],
            reason=Reason.CANCELLED,
            phase=Phase.RUN,
            message=message,
        )
    except InvalidTransition:
        pass

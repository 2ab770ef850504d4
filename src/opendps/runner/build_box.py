"""Builds in the job's box (DESIGN §12): the build command runs like a job — bwrap when
available, as the job user, in its own cgroup with the algorithm queue's memory, CPU and
process limits, stopped after ``build_time_limit`` — with its build folder as the only
writable place (network on: builds install packages)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from opendps.errors import BuildError
from opendps.registry.build import CommandRunner
from opendps.runner.execute import execute
from opendps.runner.sandbox import BWRAP
from opendps.runner.workdir import hand_over, take_back
from opendps.settings import QueueConfig, format_size

if TYPE_CHECKING:
    from opendps.runner.sandbox import Sandbox


def log_name(target: Path, log: BinaryIO) -> str:
    return str(Path(log.name).relative_to(target))


def build_cgroup_name(target: Path, build_id: int) -> str:
    """The build's cgroup name: build ids are per database, so two servers or workers on one
    host (each its own data dir) would share ``build-3`` — and a new cgroup of a name empties
    the old one. The build folder's path makes it unique to this build of this data dir."""
    digest = hashlib.sha256(str(Path(target).absolute()).encode()).hexdigest()[:12]
    return f"build-{build_id}-{digest}"


def boxed_build_runner(
    sandbox: Sandbox, kill_grace: float, target: Path, build_id: int, queue: QueueConfig | None
) -> CommandRunner:
    """A ``run_command`` for :func:`opendps.registry.build.build_algorithm`."""

    def run(
        argv: list[str], cwd: Path, env: dict[str, str], log: BinaryIO, deadline: float | None
    ) -> int:
        launch = sandbox.launch(sandbox.box(target), argv, env, cwd=Path(cwd))
        limit = None if deadline is None else max(deadline - time.monotonic(), 0.01)
        log.flush()
        if sandbox.user is not None:
            hand_over(target, sandbox.user.uid, sandbox.user.gid)
        try:
            result = execute(
                launch.argv,
                cwd=launch.cwd,
                env=launch.env,
                stdout_path=Path(log.name),
                stderr_path=Path(log.name),
                time_limit=limit,
                memory_limit=queue.memory if queue else None,
                cpus=queue.cpus if queue else None,
                max_processes=queue.max_processes if queue else None,
                user=launch.user,
                boxed=launch.isolation == BWRAP,
                kill_grace=kill_grace,
                job_id=build_cgroup_name(target, build_id),
            )
        finally:
            if sandbox.user is not None:
                # The virtualenv's links to the interpreter stay; the log must be a file.
                take_back(target, keep_links=True, files=(log_name(target, log),))
        if result.timed_out:
            raise BuildError(
                f"the build timed out: the build command was stopped after {limit:.0f} s "
                "(build_time_limit)"
            )
        if result.oom:
            name = queue.name if queue else "?"
            size = format_size(queue.memory or 0) if queue else "?"
            raise BuildError(
                f"the build command was killed for using more than the memory limit of queue "
                f"{name} ({size})"
            )
        if result.exit_code is None:
            return 128 + (result.signal or 0)
        return result.exit_code

    return run

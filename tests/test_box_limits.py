"""Limits that hold (issue #9 item 3): jobs that misbehave end with the right reason and
leave no process, cgroup or file behind — in the bwrap box and with process isolation."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from opendps.models import BuildStatus, JobStatus, Reason
from opendps.registry.spec import parse_registration
from opendps.runner.build_box import build_cgroup_name
from tests.support.box import BoxedDPS, job_cgroups, processes_with
from tests.support.dps import algorithm_yaml, wait_until


def _script(body: str) -> dict[str, str]:
    return {"run.sh": "#!/usr/bin/env bash\n" + body}


def _register(dps: BoxedDPS, make_repo: Callable[..., Path], body: str, **kw: object) -> str:
    return dps.register(make_repo(_script(body), executable=["run.sh"]), **kw)


def _nothing_left(job_id: str, marker: str) -> None:
    wait_until(lambda: not processes_with(marker), timeout=10, what=f"no {marker} processes")
    assert job_cgroups(job_id) == []


def test_a_fork_bomb_is_capped_by_max_processes(
    boxed: BoxedDPS, make_algorithm_repo: Callable[..., Path]
) -> None:
    marker = f"forkbomb-{uuid.uuid4().hex[:8]}"
    body = f"for i in $(seq 1000); do (exec -a {marker} sleep 60) & done 2>/dev/null\nwait\n"
    pid = _register(boxed, make_algorithm_repo, body)
    job = boxed.run(pid, queue="forks")  # max_processes 50, time limit 4 s
    assert (job.status, job.reason) == (JobStatus.FAILED, Reason.TIMEOUT)
    assert job.metrics["peak_processes"] <= 50
    assert "pids" in job.metrics["limits"]
    _nothing_left(job.id, marker)


def test_allocating_past_the_memory_limit_is_oom_naming_the_limit_and_a_bigger_queue(
    boxed: BoxedDPS, make_algorithm_repo: Callable[..., Path]
) -> None:
    body = "head -c 400000000 /dev/zero | tail > /dev/null\n"  # tail holds it all in memory
    pid = _register(boxed, make_algorithm_repo, body)
    job = boxed.run(pid, queue="small")  # 64 MB
    assert (job.status, job.reason) == (JobStatus.FAILED, Reason.OOM), job.message
    assert "memory limit of queue small (64 MiB)" in job.message
    assert "next bigger queue is medium (256 MiB)" in job.message
    assert job_cgroups(job.id) == []


def test_a_job_that_ignores_sigterm_is_killed_after_the_grace(
    boxed: BoxedDPS, make_algorithm_repo: Callable[..., Path]
) -> None:
    marker = f"stubborn-{uuid.uuid4().hex[:8]}"
    body = f"trap '' TERM\n(exec -a {marker} sleep 60) &\nwait\n"
    pid = _register(boxed, make_algorithm_repo, body)
    started = time.monotonic()
    job = boxed.run(pid, queue="short")  # 2 s, then kill_grace 1 s
    assert (job.status, job.reason) == (JobStatus.FAILED, Reason.TIMEOUT)
    assert time.monotonic() - started < 30
    _nothing_left(job.id, marker)


def test_a_setsid_daemon_does_not_outlive_its_job(
    boxed: BoxedDPS, make_algorithm_repo: Callable[..., Path]
) -> None:
    marker = f"daemon-{uuid.uuid4().hex[:8]}"
    body = f"setsid bash -c 'exec -a {marker} sleep 300' < /dev/null > /dev/null 2>&1 &\nexit 0\n"
    pid = _register(boxed, make_algorithm_repo, body)
    job = boxed.run(pid)
    assert job.status == JobStatus.SUCCESSFUL, job.message
    _nothing_left(job.id, marker)
    assert job.work_dir is None  # successful: its work dir is gone too


def test_disk_space_is_checked_before_the_job_starts(
    boxed: BoxedDPS, make_algorithm_repo: Callable[..., Path]
) -> None:
    repo = make_algorithm_repo(_script("echo ran > output/ran\n"), executable=["run.sh"])
    text = algorithm_yaml(repo) + "disk_space: 100000TB\n"
    algorithm = boxed.services.algorithms.register(
        parse_registration(text), owner="anonymous", replace=True
    )
    wait_until(
        lambda: (
            boxed.services.algorithms.get(algorithm.process_id).build.status == BuildStatus.READY
        ),
        what="build",
    )
    job = boxed.run(algorithm.process_id)
    assert (job.status, job.reason) == (JobStatus.FAILED, Reason.LOCALIZE_ERROR)
    assert "missing" in job.message and "disk_space" in job.message
    assert "run" not in job.metrics.get("phase_seconds", {})


def test_a_job_that_fills_its_disk_space_is_stopped(
    boxed: BoxedDPS, make_algorithm_repo: Callable[..., Path]
) -> None:
    marker = f"filler-{uuid.uuid4().hex[:8]}"
    body = (
        f"(exec -a {marker} sleep 60) &\n"
        "for i in $(seq 200); do head -c 1000000 /dev/zero >> big; sleep 0.05; done\n"
    )
    repo = make_algorithm_repo(_script(body), executable=["run.sh"])
    text = algorithm_yaml(repo) + "disk_space: 20MB\n"
    algorithm = boxed.services.algorithms.register(
        parse_registration(text), owner="anonymous", replace=True
    )
    wait_until(
        lambda: (
            boxed.services.algorithms.get(algorithm.process_id).build.status == BuildStatus.READY
        ),
        what="build",
    )
    job = boxed.run(algorithm.process_id)
    assert (job.status, job.reason) == (JobStatus.FAILED, Reason.EXIT_CODE)
    assert "disk_space (20 MiB)" in job.message
    assert (Path(job.work_dir) / "big").stat().st_size < 100_000_000
    _nothing_left(job.id, marker)


def test_filling_the_private_tmp_counts_against_the_memory_limit(
    boxed_factory: Callable[..., BoxedDPS], make_algorithm_repo: Callable[..., Path]
) -> None:
    dps = boxed_factory("bwrap")
    body = "head -c 400000000 /dev/zero > /tmp/fill\n"
    pid = _register(dps, make_algorithm_repo, body)
    job = dps.run(pid, queue="small")
    assert (job.status, job.reason) == (JobStatus.FAILED, Reason.OOM), job.message
    assert not Path("/tmp/fill").exists()  # the box's /tmp is its own


@pytest.mark.parametrize("isolation", ["bwrap"])
def test_a_slow_build_does_not_hold_up_other_builds_and_stops_at_its_limit(
    isolation: str,
    boxed_factory: Callable[..., BoxedDPS],
    make_algorithm_repo: Callable[..., Path],
) -> None:
    dps = boxed_factory(isolation, build_time_limit=6, build_slots=2)
    marker = f"slowbuild-{uuid.uuid4().hex[:8]}"
    slow = make_algorithm_repo(
        {"build.sh": f"exec -a {marker} sleep 300\n", "run.sh": "#!/usr/bin/env bash\n"},
        executable=["run.sh"],
    )
    fast = make_algorithm_repo(
        {"build.sh": "echo built\n", "run.sh": "#!/usr/bin/env bash\n"}, executable=["run.sh"]
    )
    services = dps.services
    slow_id = services.algorithms.register(
        parse_registration(algorithm_yaml(slow, name="slow", build="build.sh")),
        owner="anonymous",
        replace=True,
    ).process_id
    fast_id = services.algorithms.register(
        parse_registration(algorithm_yaml(fast, name="fast", build="build.sh")),
        owner="anonymous",
        replace=True,
    ).process_id
    wait_until(
        lambda: services.algorithms.get(fast_id).build.status == BuildStatus.READY,
        timeout=5,
        what="the fast build while the slow one sleeps",
    )
    assert services.algorithms.get(slow_id).build.status == BuildStatus.BUILDING
    wait_until(
        lambda: services.algorithms.get(slow_id).build.status == BuildStatus.FAILED,
        timeout=30,
        what="the slow build to hit build_time_limit",
    )
    assert "build_time_limit" in services.algorithms.get(slow_id).build.message
    slow = services.algorithms.get(slow_id)
    assert slow.build is not None
    target = services.algorithms.build_dir(slow, slow.build)
    _nothing_left(build_cgroup_name(target, slow.build.id), marker)

"""Exactly one run (issue #9 item 5): attempts are fenced, a job is never left running without
a live supervisor, and a run command that started is never run again silently."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from opendps.errors import InvalidTransition
from opendps.executors.recovery import node_id, recover_job, recover_node, worker_id
from opendps.models import JobStatus, Phase, Reason
from opendps.runner.supervisor import supervise
from opendps.service.context import Services
from opendps.service.jobs import Submission
from tests.support.box import BoxedDPS
from tests.support.dps import ONE_QUEUE, fast_settings, wait_until
from tests.support.run_log import RunLog

ECHO = "echo:1.0.0"


@pytest.fixture
def store_services(tmp_path: Path) -> Services:
    """Services on a store with no executor: the test plays the workers."""
    settings = fast_settings(tmp_path / "dps", queues=ONE_QUEUE, heartbeat_timeout=2)
    services = Services(settings)
    services.catalog.sync_queues(settings.queues)
    from opendps.builtins import BUILTIN_SPECS

    for spec in BUILTIN_SPECS:
        services.algorithms.ensure_builtin(spec)
    yield services
    services.close()


def _claim(services: Services, *, worker: str, node: str, host: str = "same-host"):
    services.jobs.submit(Submission(ECHO, {"echoInput": "x"}), owner="anonymous")
    job = services.job_store.claim_next({"q": 5}, host=host, worker=worker, node=node)
    assert job is not None
    return job


def test_a_stale_attempt_can_change_nothing(store_services: Services) -> None:
    store = store_services.job_store
    job = _claim(store_services, worker=worker_id(), node=node_id())
    assert store.record_supervisor(job.id, 11, 1.0, attempt=1)
    store.requeue(job.id, "lost", attempt=1)
    again = store.claim_next({"q": 1}, host="h", worker=worker_id(), node=node_id())
    assert again.attempts == 2
    # The first attempt's supervisor (or its recovery) comes back late: fenced out.
    assert not store.record_supervisor(job.id, 12, 1.0, attempt=1)
    assert not store.record_run_start(job.id, 1, 13, 1.0, [])
    with pytest.raises(InvalidTransition, match="not at attempt 1"):
        store.transition(job.id, JobStatus.SUCCESSFUL, allowed_from=[JobStatus.RUNNING], attempt=1)
    with pytest.raises(InvalidTransition):
        store.requeue(job.id, "late recovery", attempt=1)
    assert store.get_job(job.id).status == JobStatus.RUNNING
    assert store.current_attempt(job.id).number == 2


def test_a_supervisor_of_an_attempt_that_is_over_runs_nothing(store_services: Services) -> None:
    store = store_services.job_store
    job = _claim(store_services, worker=worker_id(), node=node_id())
    store.requeue(job.id, "lost", attempt=1)
    store.claim_next({"q": 1}, host="h", worker=worker_id(), node=node_id())
    services = Services(store_services.settings)
    assert supervise(services, job.id, attempt=1) == 0  # leaves at once
    job = store.get_job(job.id)
    assert (job.status, job.attempts, job.work_dir) == (JobStatus.RUNNING, 2, None)
    assert store.current_attempt(job.id).pid is None


def test_two_workers_with_one_hostname_never_recover_each_others_jobs(
    store_services: Services,
) -> None:
    store = store_services.job_store
    # Another container with the same hostname: another node; its pids mean nothing here.
    theirs = _claim(store_services, worker="same-host:1:abc", node="same-host/other/1")
    store.record_supervisor(theirs.id, 1, 1.0, attempt=1)  # pid 1 is alive here, or not
    # A job this process claimed a moment ago, supervisor still starting.
    ours = _claim(store_services, worker=worker_id(), node=node_id())
    adopted, recovered = recover_node(store_services)
    assert recovered == []
    assert [job.id for job, _ in adopted] == [ours.id]  # theirs is not this node's to judge
    assert store.get_job(theirs.id).status == JobStatus.RUNNING
    assert store.get_job(ours.id).status == JobStatus.RUNNING
    # No supervisor for longer than heartbeat_timeout: recovered (re-queued), fenced.
    time.sleep(2.2)
    adopted, recovered = recover_node(store_services)
    assert [j.id for j in recovered] == [ours.id]
    assert store.get_job(ours.id).status == JobStatus.ACCEPTED
    assert store.get_job(theirs.id).status == JobStatus.RUNNING


def test_a_run_that_ended_is_never_run_again(store_services: Services) -> None:
    store = store_services.job_store
    job = _claim(store_services, worker=worker_id(), node=node_id())
    store.record_supervisor(job.id, 999_999, 1.0, attempt=1)
    store.record_run_start(job.id, 1, 999_998, 1.0, [])
    store.record_run_end(job.id, 1)
    # The supervisor died after the run, before the final write (or the store refused it).
    final = recover_job(store_services, store.get_job(job.id), "its supervisor was gone")
    assert (final.status, final.reason, final.phase) == (
        JobStatus.FAILED,
        Reason.WORKER_LOST,
        Phase.STAGE,
    )
    assert final.attempts == 1
    assert "not run again" in final.message


def _run_script(run_log: RunLog, seconds: float) -> dict[str, str]:
    return {
        "run.sh": "#!/usr/bin/env bash\nrun=$(date +%s%N)\n"
        + run_log.report("start $run")
        + f"\nsleep {seconds}\n"
        + run_log.report("end $run")
        + "\n"
    }


def test_a_dead_launcher_and_supervisor_do_not_leave_a_job_running(
    boxed: BoxedDPS, make_algorithm_repo: Callable[..., Path], run_log: RunLog
) -> None:
    dps = boxed
    repo = make_algorithm_repo(_run_script(run_log, 3), executable=["run.sh"])
    pid = dps.register(repo)
    job_id = dps.submit(pid)
    store = dps.services.job_store
    wait_until(lambda: run_log.lines(), timeout=30, what="the run to start")
    attempt = store.current_attempt(job_id)
    launcher = dps.executor._launcher
    assert launcher is not None
    os.kill(launcher.pid, signal.SIGKILL)
    os.kill(attempt.pid, signal.SIGKILL)
    lost = time.monotonic()
    wait_until(
        lambda: store.get_job(job_id).attempts == 2,
        timeout=dps.services.settings.heartbeat_timeout,
        what="the executor to notice its own dead supervisor",
    )
    assert time.monotonic() - lost < dps.services.settings.heartbeat_timeout
    final = wait_until(
        lambda: j if (j := store.get_job(job_id)).status.terminal else None, timeout=60
    )
    assert final.status == JobStatus.SUCCESSFUL, final.message
    assert (
        not psutil.pid_exists(attempt.run_pid)
        or psutil.Process(attempt.run_pid).create_time() != attempt.run_pid_started
    )
    words = [line.split()[0] for line in run_log.lines()]
    assert words == ["start", "start", "end"]  # the first copy never finished


def test_a_staging_failure_after_the_run_ends_the_job_without_running_it_again(
    boxed_factory: Callable[..., BoxedDPS],
    make_algorithm_repo: Callable[..., Path],
    run_log: RunLog,
    box_root: Path,
) -> None:
    not_a_folder = box_root / "storage-is-a-file"
    not_a_folder.write_text("x")
    dps = boxed_factory("bwrap", storage_url=str(not_a_folder))
    repo = make_algorithm_repo(_run_script(run_log, 0), executable=["run.sh"])
    pid = dps.register(repo)
    job = dps.run(pid)
    assert (job.status, job.reason, job.phase) == (
        JobStatus.FAILED,
        Reason.UPLOAD_ERROR,
        Phase.STAGE,
    )
    time.sleep(1)  # a re-queue would have started the run again by now
    assert [line.split()[0] for line in run_log.lines()] == ["start", "end"]
    assert dps.services.job_store.get_job(job.id).attempts == 1


def test_stage_time_limit_ends_a_slow_upload(
    boxed_factory: Callable[..., BoxedDPS], make_algorithm_repo: Callable[..., Path]
) -> None:
    dps = boxed_factory("bwrap", stage_time_limit=0.001)
    body = "#!/usr/bin/env bash\nfor i in $(seq 300); do echo $i > output/f$i; done\n"
    repo = make_algorithm_repo({"run.sh": body}, executable=["run.sh"])
    job = dps.run(dps.register(repo))
    assert (job.status, job.reason) == (JobStatus.FAILED, Reason.UPLOAD_ERROR)
    assert "stage_time_limit" in job.message

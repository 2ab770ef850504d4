"""Faults in scale-out mode, with real processes (DESIGN §13): a worker killed or frozen
mid-job, the broker connection cut, the database connections dropped, the broker missing
at submit. Every job ends exactly once, nothing runs twice at once, nothing is lost.

The cluster: ``dps server`` (executor celery, enqueues only), PostgreSQL (own database),
RabbitMQ (own vhost), SeaweedFS S3, and two ``dps worker`` processes on queue ``q`` with
concurrency 1 and separate data dirs; ``heartbeat_timeout`` is 3 s.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from opendps.store.tables import jobs
from tests.support.cluster import Cluster, write_config
from tests.support.dps import wait_until
from tests.support.git_repos import commit_files, git
from tests.support.netns import Namespace, TcpRelay
from tests.support.rabbitmq import RabbitVhost, delete_vhost, new_vhost
from tests.support.s3_server import S3Server

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.s3]

RUN_SH = """#!/bin/bash
sleep "$1"
echo "$2" > output/ok.txt
echo "ran $2 in $PWD"
"""
PROCESS = "faulty:main"
HEARTBEAT_TIMEOUT = 3


@pytest.fixture
def algorithm_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repos" / "faulty"
    repo.mkdir(parents=True)
    git(repo, "init", "--quiet", "--initial-branch", "main")
    commit_files(repo, {"run.sh": RUN_SH}, executable=["run.sh"])
    return repo


@pytest.fixture
def make_cluster(
    tmp_path: Path,
    postgres_url: str,
    rabbitmq_vhost: RabbitVhost,
    s3_server: S3Server,
    algorithm_repo: Path,
) -> Iterator[Callable[..., Cluster]]:
    clusters: list[Cluster] = []

    def make(
        workers: int = 2,
        register: bool = True,
        vhost: RabbitVhost | None = None,
        **settings: Any,
    ) -> Cluster:
        values = {
            "heartbeat_timeout": HEARTBEAT_TIMEOUT,
            "max_attempts": 3,
            "queues": [{"name": "q", "slots": 1, "default": True}],
            **settings,
        }
        cluster = Cluster.celery(
            tmp_path,
            values,
            database_url=postgres_url,
            vhost=vhost or rabbitmq_vhost,
            s3=s3_server,
            workers=[{"concurrency": 1}] * workers,
        )
        clusters.append(cluster)
        if register:
            register_algorithm(cluster, algorithm_repo)
        return cluster

    try:
        yield make
    finally:
        for cluster in clusters:
            cluster.close()


def register_algorithm(cluster: Cluster, repo: Path) -> None:
    cluster.server.client.register(
        f"""algorithm_name: faulty
algorithm_version: main
repository_url: {repo}
run_command: {repo.name}/run.sh
inputs:
  positional:
    - {{name: seconds, default: "0"}}
    - {{name: label, default: "x"}}
"""
    )
    assert cluster.server.client.wait_for_build(PROCESS, timeout=120)["build"]["status"] == "ready"


def submit(cluster: Cluster, seconds: float, label: str) -> str:
    return cluster.server.client.submit(PROCESS, {"seconds": str(seconds), "label": label})["jobID"]


def wait_running(cluster: Cluster, job_id: str) -> None:
    wait_until(lambda: cluster.job(job_id).status.value == "running", 60, what="running")
    time.sleep(0.5)  # past the claim: the run command has started


def terminal_events(cluster: Cluster, job_id: str) -> list:
    return [e for e in cluster.store.job_events(job_id) if e.status.terminal]


def assert_outputs_once(cluster: Cluster, job_id: str, label: str) -> None:
    outputs = cluster.server.client.outputs(job_id)["outputs"]
    paths = [o["path"] for o in outputs]
    assert sorted(paths) == sorted(set(paths))
    assert sorted(paths) == ["_stderr.txt", "_stdout.txt", "ok.txt"]
    stdout = cluster.server.client.logs(job_id)["stdout"]
    assert stdout.count(f"ran {label}") == 1, stdout


def test_a_sigkilled_worker_s_job_is_rerun_once_on_the_other_worker(make_cluster) -> None:
    cluster = make_cluster()
    job_id = submit(cluster, 4, "killed")
    wait_running(cluster, job_id)
    victim = cluster.worker_running(job_id)
    victim.kill()
    info = cluster.server.client.wait(job_id, timeout=HEARTBEAT_TIMEOUT + 60, poll=0.2)
    assert info["status"] == "successful"
    job = cluster.job(job_id)
    assert job.attempts == 2
    attempts = cluster.attempts(job_id)
    assert attempts[0].worker != attempts[1].worker  # re-run on the live worker
    assert cluster.worker_running(job_id) is not victim
    assert len(terminal_events(cluster, job_id)) == 1
    assert_outputs_once(cluster, job_id, "killed")
    messages = " ".join(e.message or "" for e in cluster.store.job_events(job_id))
    assert "sent no heartbeat" in messages
    # The dead worker leaves GET /queues once its jobs are recovered.
    workers = cluster.server.client.queues()[0]["workers"]
    assert victim.pid not in {int(w["id"].rsplit(":", 2)[1]) for w in workers}


def test_a_sigkilled_worker_at_the_attempt_cap_fails_its_job_worker_lost(make_cluster) -> None:
    cluster = make_cluster(max_attempts=1)
    job_id = submit(cluster, 30, "lost")
    wait_running(cluster, job_id)
    cluster.worker_running(job_id).kill()
    info = cluster.server.client.wait(job_id, timeout=HEARTBEAT_TIMEOUT + 60, poll=0.2)
    job = cluster.job(job_id)
    assert info["status"] == "failed" and job.reason.value == "worker_lost"
    assert job.attempts == 1 and len(terminal_events(cluster, job_id)) == 1


def test_a_frozen_worker_that_comes_back_cannot_overwrite_the_rerun(make_cluster) -> None:
    """SIGSTOP stands for a partition: the worker's heartbeat stops, its run command goes
    on. Its job is re-run elsewhere; resumed, the stale worker's late write is refused."""
    cluster = make_cluster()
    job_id = submit(cluster, 3, "frozen")
    wait_running(cluster, job_id)
    stale = cluster.worker_running(job_id)
    os.kill(stale.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: cluster.job(job_id).attempts == 2, HEARTBEAT_TIMEOUT + 30, what="rerun")
        info = cluster.server.client.wait(job_id, timeout=60, poll=0.2)
    finally:
        os.kill(stale.pid, signal.SIGCONT)
    assert info["status"] == "successful"
    finished = cluster.job(job_id).finished
    time.sleep(HEARTBEAT_TIMEOUT)  # the stale worker wakes up, finds its run done, tries
    job = cluster.job(job_id)
    assert job.status.value == "successful" and job.finished == finished
    assert job.attempts == 2
    assert len(terminal_events(cluster, job_id)) == 1
    assert cluster.attempts(job_id)[-1].worker != cluster.attempts(job_id)[0].worker
    assert "stopping it" in stale.log_tail(200) or "left this worker" in stale.log_tail(200)
    assert_outputs_once(cluster, job_id, "frozen")


def test_closing_the_broker_connections_loses_no_job_and_runs_none_twice(
    make_cluster, rabbitmq_vhost: RabbitVhost
) -> None:
    cluster = make_cluster(workers=1)
    running = submit(cluster, 4, "during")
    wait_running(cluster, running)
    waiting = submit(cluster, 0, "queued")
    assert rabbitmq_vhost.close_connections("test: broker restart") >= 1
    for job_id in (running, waiting):
        assert cluster.server.client.wait(job_id, timeout=60, poll=0.2)["status"] == "successful"
        assert cluster.job(job_id).attempts == 1
        assert len(terminal_events(cluster, job_id)) == 1
    after = submit(cluster, 0, "after")  # the server and the worker reconnected
    assert cluster.server.client.wait(after, timeout=60, poll=0.2)["status"] == "successful"
    wait_until(lambda: rabbitmq_vhost.queue_depth("q") == 0, 30, what="no message left")


def test_dropping_the_database_connections_mid_run_still_ends_the_job(make_cluster) -> None:
    cluster = make_cluster(workers=1)
    job_id = submit(cluster, 3, "dbdrop")
    wait_running(cluster, job_id)
    name = sa.make_url(cluster.database_url).database
    with cluster.db.engine.connect() as conn:
        dropped = conn.execute(
            sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": name},
        ).scalar()
    assert dropped >= 1
    info = cluster.server.client.wait(job_id, timeout=60, poll=0.2)
    assert info["status"] == "successful"
    assert cluster.job(job_id).attempts == 1


def test_a_job_submitted_while_the_broker_is_down_runs_once_it_is_back(
    make_cluster, algorithm_repo: Path
) -> None:
    """The broker's vhost does not exist at submit (connection refused): the job is
    accepted and stored; once the broker answers, the sweeper publishes it."""
    missing = RabbitVhost(f"dps-test-{uuid.uuid4().hex[:12]}")
    cluster = make_cluster(workers=0, register=False, vhost=missing)
    register_algorithm(cluster, algorithm_repo)
    job_id = submit(cluster, 0, "late")
    assert cluster.job(job_id).status.value == "accepted"
    time.sleep(3)  # sweeps fail meanwhile; the job stays accepted and unenqueued
    with cluster.db.read() as conn:
        enqueued = conn.execute(sa.select(jobs.c.enqueued).where(jobs.c.id == job_id)).scalar()
    assert enqueued is None
    [queue] = cluster.server.client.queues()  # nothing serves q: GET /queues says so
    assert queue["depth"] == 1 and queue["workers"] == [] and queue["unserved"] is True
    assert "no worker serves it" in queue["warning"]
    created = new_vhost(missing.name)
    try:
        cluster.add_worker("late-worker", concurrency=1)
        info = cluster.server.client.wait(job_id, timeout=60, poll=0.2)
        assert info["status"] == "successful"
        assert cluster.job(job_id).attempts == 1
    finally:
        delete_vhost(created)


def test_a_partitioned_worker_loses_its_job_and_its_late_write_is_refused(
    make_cluster, netns: Namespace, s3_server: S3Server
) -> None:
    """A worker on its own network (a namespace behind a veth link) runs a job; the link is
    cut for longer than heartbeat_timeout, the job is re-run on a worker of this host, then
    the link comes back: exactly one terminal state, the partitioned worker writes nothing."""
    cluster = make_cluster(workers=0)
    relays = [
        TcpRelay(netns.host_ip, port)
        for port in (
            5672,
            sa.make_url(cluster.database_url).port or 5432,
            int(s3_server.endpoint_url.rsplit(":", 1)[1]),
        )
    ]
    try:
        amqp, pg, s3 = (r.port for r in relays)
        values = yaml.safe_load(cluster.config.read_text())
        url = sa.make_url(cluster.database_url).set(host=netns.host_ip, port=pg)
        values.update(
            broker_url=cluster.vhost.url.replace("127.0.0.1:5672", f"{netns.host_ip}:{amqp}"),
            database_url=url.render_as_string(hide_password=False),
            s3_endpoint_url=f"http://{netns.host_ip}:{s3}",
        )
        remote_config = write_config(cluster.root / "remote.yml", values)
        remote = cluster.add_worker(
            "remote", config=remote_config, concurrency=1, prefix=netns.prefix
        )
        job_id = submit(cluster, 6, "partitioned")
        wait_running(cluster, job_id)
        assert cluster.worker_running(job_id) is remote
        cluster.add_worker("local", concurrency=1)  # where the re-run can go
        netns.cut()
        try:
            wait_until(lambda: cluster.job(job_id).attempts == 2, HEARTBEAT_TIMEOUT + 30)
            info = cluster.server.client.wait(job_id, timeout=60, poll=0.2)
            assert info["status"] == "successful"
            time.sleep(2)  # the partitioned run has ended too (it slept 6 s)
        finally:
            netns.restore()
        finished = cluster.job(job_id).finished
        wait_until(
            lambda: (
                "left this worker" in remote.log_tail(3000) or "ignored" in remote.log_tail(3000)
            ),
            120,  # it reconnects to the broker and the database first, with back-off
            what="the partitioned worker to notice",
        )
        time.sleep(HEARTBEAT_TIMEOUT)
        job = cluster.job(job_id)
        assert job.status.value == "successful" and job.finished == finished
        assert job.attempts == 2  # the healthy worker was never taken for lost
        assert len(terminal_events(cluster, job_id)) == 1
        assert cluster.attempts(job_id)[-1].worker != cluster.attempts(job_id)[0].worker
        assert_outputs_once(cluster, job_id, "partitioned")
    finally:
        for relay in relays:
            relay.close()

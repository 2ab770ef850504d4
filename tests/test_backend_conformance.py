"""One backend conformance suite (DESIGN §10): the same scenarios, through the same HTTP
API, against

- ``local``: the embedded mode — local executor in the server, SQLite, a storage folder;
- ``celery``: scale-out — ``executor: celery`` with the machine's RabbitMQ (its own vhost),
  PostgreSQL (its own database) and SeaweedFS S3, the server enqueueing only, and real
  ``dps worker`` processes with separate data dirs (each rebuilds the algorithm itself).

Queues: ``serial`` (1 slot), ``pair`` (2 slots), ``limited`` (1 slot, 2 s time limit). In
the celery cluster one worker serves ``serial`` and ``limited`` with concurrency 1 and
another serves ``pair`` with concurrency 2, so slots mean the same in both.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.cluster import Cluster
from tests.support.dps import wait_until
from tests.support.git_repos import commit_files, git
from tests.support.postgres import _admin_engine, _drop_database, _with_database
from tests.support.rabbitmq import _broker_reachable, _unavailable, delete_vhost, new_vhost

pytestmark = pytest.mark.slow

RUN_SH = """#!/bin/bash
# $1: seconds to sleep; $2: a label written to output/ok.txt
sleep "$1"
echo "$2" > output/ok.txt
echo "ran $2"
"""
SETTINGS = {
    "heartbeat_timeout": 3,
    "max_attempts": 2,
    "queues": [
        {"name": "serial", "slots": 1, "default": True},
        {"name": "pair", "slots": 2},
        {"name": "limited", "slots": 1, "time_limit": 2},
    ],
}
CELERY_WORKERS = (
    {"queues": ["serial", "limited"], "concurrency": 1},
    {"queues": ["pair"], "concurrency": 2},
)
PROCESS = "sleeper:main"


def _algorithm_yaml(repo: Path) -> str:
    return f"""algorithm_name: sleeper
algorithm_version: main
repository_url: {repo}
run_command: {repo.name}/run.sh
inputs:
  positional:
    - {{name: seconds, default: "0"}}
    - {{name: label, default: "x"}}
"""


@pytest.fixture(scope="module", params=["local", "celery"])
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    root = tmp_path_factory.mktemp(f"cluster-{request.param}")
    repo = root / "repos" / "sleeper"
    repo.mkdir(parents=True)
    git(repo, "init", "--quiet", "--initial-branch", "main")
    commit_files(repo, {"run.sh": RUN_SH}, executable=["run.sh"])
    cleanups = []
    try:
        if request.param == "local":
            cluster = Cluster.local(root, SETTINGS)
        else:
            why = _broker_reachable()
            if why:
                _unavailable(why)
            admin_url = request.getfixturevalue("postgres_admin_url")
            template = request.getfixturevalue("postgres_template")
            s3 = request.getfixturevalue("s3_server")
            admin = _admin_engine(admin_url)
            name = f"opendps_conf_{uuid.uuid4().hex[:12]}"
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            cleanups.append(lambda: (_drop_database(admin, name), admin.dispose()))
            vhost = new_vhost()
            cleanups.append(lambda: delete_vhost(vhost))
            cluster = Cluster.celery(
                root,
                SETTINGS,
                database_url=_with_database(admin_url, name),
                vhost=vhost,
                s3=s3,
                workers=CELERY_WORKERS,
            )
        cleanups.insert(0, cluster.close)
        cluster.server.client.register(_algorithm_yaml(repo))
        build = cluster.server.client.wait_for_build(PROCESS, timeout=120)["build"]
        assert build["status"] == "ready", build
        yield cluster
    finally:
        for cleanup in cleanups:
            cleanup()


def submit(cluster: Cluster, seconds: float = 0, label: str = "x", **options: object) -> str:
    info = cluster.server.client.submit(
        PROCESS,
        {"seconds": str(seconds), "label": label},
        **options,  # type: ignore[arg-type]
    )
    return info["jobID"]


def wait_running(cluster: Cluster, job_id: str, timeout: float = 60) -> None:
    wait_until(
        lambda: cluster.server.client.status(job_id)["status"] == "running",
        timeout,
        what=f"job {job_id} to run",
    )


def finish(cluster: Cluster, job_id: str, timeout: float = 90) -> dict:
    return cluster.server.client.wait(job_id, timeout=timeout, poll=0.2)


def test_submitted_jobs_succeed_and_their_outputs_are_staged(cluster: Cluster) -> None:
    client = cluster.server.client
    job_id = submit(cluster, 0, "staged")
    assert client.status(job_id)["status"] in ("accepted", "running", "successful")
    assert finish(cluster, job_id)["status"] == "successful"
    outputs = client.outputs(job_id)
    paths = {o["path"] for o in outputs["outputs"]}
    assert {"ok.txt", "_stdout.txt", "_stderr.txt"} <= paths
    if cluster.name == "celery":
        assert outputs["location"].startswith("s3://")
    href = next(o for o in outputs["outputs"] if o["path"] == "ok.txt")
    body = httpx.get(f"{cluster.server.url}/jobs/{job_id}/outputs/ok.txt", timeout=10)
    assert body.status_code == 200 and body.text == "staged\n", href
    assert client.logs(job_id)["stdout"] == "ran staged\n"


def test_higher_priority_runs_first_on_a_one_slot_queue(cluster: Cluster) -> None:
    blocker = submit(cluster, 2, "blocker", queue="serial")
    wait_running(cluster, blocker)
    ids = {p: submit(cluster, 0, f"p{p}", queue="serial", priority=p) for p in (1, 5, 9, 3)}
    for job_id in [blocker, *ids.values()]:
        assert finish(cluster, job_id)["status"] == "successful"
    started = sorted(ids, key=lambda p: cluster.job(ids[p]).started)
    assert started == [9, 5, 3, 1]


def test_a_queue_runs_as_many_jobs_at_once_as_it_has_slots(cluster: Cluster) -> None:
    ids = [submit(cluster, 1.5, f"c{n}", queue="pair") for n in range(4)]
    for job_id in ids:
        assert finish(cluster, job_id)["status"] == "successful"
    spans = [(cluster.job(i).started, cluster.job(i).finished) for i in ids]
    most = max(sum(1 for s, f in spans if s <= at < f) for at, _ in spans)
    assert most == 2, spans


def test_cancel_dismisses_a_queued_and_a_running_job(cluster: Cluster) -> None:
    client = cluster.server.client
    running = submit(cluster, 60, "long", queue="serial")
    wait_running(cluster, running)
    queued = submit(cluster, 0, "never", queue="serial")
    client.cancel(queued)
    client.cancel(running)
    assert finish(cluster, queued, 30)["status"] == "dismissed"
    assert finish(cluster, running, 30)["status"] == "dismissed"
    assert cluster.job(queued).started is None  # it never ran
    assert cluster.job(running).reason.value == "cancelled"


def test_a_run_over_the_queues_time_limit_fails_with_timeout(cluster: Cluster) -> None:
    job_id = submit(cluster, 60, "slow", queue="limited")
    info = finish(cluster, job_id, 60)
    assert info["status"] == "failed"
    job = cluster.job(job_id)
    assert job.reason.value == "timeout" and job.phase.value == "run"


def test_listings_are_complete_across_pages(cluster: Cluster) -> None:
    tag = f"list-{uuid.uuid4().hex[:8]}"
    ids = {submit(cluster, 0, "l", queue="pair", tag=tag) for _ in range(7)}
    page = cluster.server.client.list_jobs(limit=3, tag=tag)
    assert page["numberMatched"] == 7
    listed = [j["jobID"] for j in cluster.server.client.iter_jobs(page_size=3, tag=tag)]
    assert sorted(listed) == sorted(ids) and len(listed) == 7
    for job_id in ids:
        finish(cluster, job_id)


def test_jobs_survive_a_restart_of_the_api_server(cluster: Cluster) -> None:
    job_id = submit(cluster, 3, "restart", queue="serial")
    wait_running(cluster, job_id)
    cluster.server.restart()
    after = submit(cluster, 0, "after", queue="serial")
    assert finish(cluster, job_id)["status"] == "successful"
    assert finish(cluster, after)["status"] == "successful"
    assert cluster.job(job_id).attempts == 1


def test_a_job_whose_runner_dies_is_rerun_until_the_attempt_cap(cluster: Cluster) -> None:
    """max_attempts 2: killed once → runs again; killed twice → failed worker_lost."""
    job_id = submit(cluster, 60, "doomed", queue="pair")
    for attempt in (1, 2):
        wait_until(
            lambda a=attempt: (
                (j := cluster.job(job_id)).attempts == a
                and j.status.value == "running"
                and (cluster.name == "celery" or cluster.attempts(job_id)[-1].pid)
            ),
            90,
            what=f"attempt {attempt}",
        )
        time.sleep(0.5)  # the run command has started
        cluster.kill_runner_of(job_id)
        if cluster.name == "celery":  # the queue's only worker is gone: start another
            cluster.add_worker(f"pair-{attempt}", queues=["pair"], concurrency=2)
    info = finish(cluster, job_id, 90)
    job = cluster.job(job_id)
    assert info["status"] == "failed" and job.reason.value == "worker_lost", job.message
    assert job.attempts == 2
    terminal = [e for e in cluster.store.job_events(job_id) if e.status.terminal]
    assert len(terminal) == 1


def test_celery_workers_rebuild_the_recorded_commit_and_say_who_ran_the_job(
    cluster: Cluster,
) -> None:
    if cluster.name != "celery":
        pytest.skip("workers with their own data dirs exist in scale-out mode only")
    job_id = submit(cluster, 0, "who", queue="serial")
    assert finish(cluster, job_id)["status"] == "successful"
    metrics = cluster.server.client.metrics(job_id)
    attempt = cluster.attempts(job_id)[-1]
    assert metrics["worker"] == {"id": attempt.worker, "host": attempt.host}
    commit = cluster.server.client.describe(PROCESS)["build"]["commit"]
    assert metrics["build"]["commit"] == commit
    assert metrics["build"]["source"] in ("rebuilt", "cached")
    worker = cluster.worker_running(job_id)
    assert any(worker.data_dir.joinpath("builds", "sleeper", "main").iterdir())
    queues = {q["name"]: q for q in cluster.server.client.queues()}
    assert {w["id"] for w in queues["serial"]["workers"]} == {attempt.worker}
    # The staged objects say whose they are (S3 user metadata).
    from opendps.settings import Settings
    from opendps.storage import storage_options
    from opendps.storage.s3_transfer import s3_client

    options = storage_options(Settings.load(cluster.config, data_dir=cluster.root / "look"))
    url = next(o for o in cluster.server.client.outputs(job_id)["outputs"] if o["path"] == "ok.txt")
    bucket, _, key = url["url"].removeprefix("s3://").partition("/")
    head = s3_client(options).head_object(Bucket=bucket, Key=key)
    assert head["Metadata"]["dps-job-id"] == job_id
    assert head["Metadata"]["dps-algorithm"] == "sleeper"


def test_queues_list_the_workers_that_serve_them(cluster: Cluster) -> None:
    queues = {q["name"]: q for q in cluster.server.client.queues()}
    assert set(queues) == {"serial", "pair", "limited"}
    for queue in queues.values():
        assert queue["workers"], queue
        for worker in queue["workers"]:
            assert {"id", "host", "concurrency", "running", "last_seen"} <= set(worker)
            assert worker["concurrency"] >= 1
        assert queue["unserved"] is False and queue["warning"] is None
        assert {"depth", "running", "oldest_waiting_seconds"} <= set(queue)

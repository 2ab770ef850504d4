"""Dispatch throughput and API latency of the embedded DPS.

1. N jobs of a trivial run script through ``dps server`` (submit over HTTP, wait for all),
   against a baseline doing the same per-job work with a bare ``multiprocessing.Pool(2)``
   (make the work dir, run the script, copy ``output/``). Reports both times and
   ``ratio = baseline / dps`` (target >= 0.5 on 2 cores).
2. p50/p99 of ``GET /jobs/{id}`` and of the first page of ``GET /jobs`` with 100,000 jobs
   in the store (targets: p99 < 20 ms and < 100 ms).

3. With ``--celery``: the scale-out path beside a raw-Celery baseline, in the same run and
   against the machine's RabbitMQ (a fresh vhost, deleted after): a plain Celery task doing
   the same per-job work (``celery -A celery_baseline worker -c 2``, acks_late, prefetch 1),
   and opendps with ``executor: celery`` (``dps server`` enqueueing, two ``dps worker``s with
   concurrency 1 and their own data dirs; jobs submitted in one ``POST /batches``).
   ``celery_ratio = dps / raw`` in jobs per second (target >= 0.7).

Run: ``.venv/bin/python bench/dispatch.py [--jobs 1000] [--store-jobs 100000]``, or
``bench/dispatch.py --celery --jobs 300`` for the scale-out comparison only.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

RUN_SCRIPT = "#!/bin/sh\necho done > output/result.txt\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_repo(root: Path) -> Path:
    repo = root / "trivial"
    repo.mkdir(parents=True)
    (repo / "run.sh").write_text(RUN_SCRIPT)
    (repo / "run.sh").chmod(0o755)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@b",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@b",
    }
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "x"]):
        subprocess.run(["git", *args], cwd=repo, check=True, env=env)
    return repo


def start_server(data_dir: Path, port: int, run_jobs: bool = True) -> subprocess.Popen[bytes]:
    config = data_dir.parent / f"{data_dir.name}.yml"
    config.write_text("queues:\n  - {name: bench, slots: 2, default: true}\n")
    env = {**os.environ, "DPS_RUN_JOBS": str(run_jobs).lower()}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "opendps.cli",
            "server",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--config",
            str(config),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/conformance").status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not start")


def bench_dps(root: Path, repo: Path, jobs: int) -> float:
    port = free_port()
    server = start_server(root / "dps", port)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            yaml = (
                f"algorithm_name: trivial\nalgorithm_version: main\nrepository_url: {repo}\n"
                "run_command: trivial/run.sh\n"
            )
            client.post(
                "/processes", content=yaml, headers={"content-type": "application/yaml"}
            ).raise_for_status()
            while client.get("/processes/trivial").json()["build"]["status"] != "ready":
                time.sleep(0.1)
            started = time.perf_counter()
            for _ in range(jobs):
                client.post("/processes/trivial/execution", json={"inputs": {}}).raise_for_status()
            while True:
                done = sum(
                    client.get("/jobs", params={"status": s, "limit": 1}).json()["numberMatched"]
                    for s in ("successful", "failed", "dismissed")
                )
                if done >= jobs:
                    break
                time.sleep(0.05)
            elapsed = time.perf_counter() - started
            failed = client.get("/jobs", params={"status": "failed", "limit": 1}).json()
            if failed["numberMatched"]:
                print(f"warning: {failed['numberMatched']} job(s) failed", file=sys.stderr)
            return elapsed
    finally:
        server.terminate()
        server.wait(30)


def _baseline_job(args: tuple[str, str, int]) -> None:
    root, script, n = args
    work = Path(root) / f"job-{n}"
    (work / "input").mkdir(parents=True)
    (work / "output").mkdir()
    with open(work / "_stdout.txt", "wb") as out, open(work / "_stderr.txt", "wb") as err:
        subprocess.run([script], cwd=work, stdout=out, stderr=err, check=True)
    shutil.copytree(work / "output", Path(root) / "staged" / str(n))


def bench_baseline(root: Path, repo: Path, jobs: int) -> float:
    target = root / "baseline"
    target.mkdir()
    started = time.perf_counter()
    with multiprocessing.Pool(2) as pool:
        pool.map(_baseline_job, [(str(target), str(repo / "run.sh"), n) for n in range(jobs)])
    return time.perf_counter() - started


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1]


def bench_latency(root: Path, store_jobs: int, requests: int = 500) -> dict[str, float]:
    from opendps.models import BuildStatus
    from opendps.service.context import Services
    from opendps.settings import Settings

    data_dir = root / "latency"
    services = Services(Settings(data_dir=data_dir))
    algorithm = services.catalog.save_algorithm(
        name="filler",
        version="1",
        owner="anonymous",
        spec={"name": "filler", "version": "1"},
        package=None,
        package_type=None,
        build_status=BuildStatus.READY,
    )
    ids: list[str] = []
    for start in range(0, store_jobs, 5000):
        created = services.job_store.create_jobs(
            {
                "algorithm_id": algorithm.id,
                "algorithm": "filler",
                "version": "1",
                "owner": "anonymous",
                "queue": "bench",
                "priority": 5,
                "tags": [f"t{n % 7}"],
                "inputs": {"n": n},
            }
            for n in range(start, min(start + 5000, store_jobs))
        )
        ids += [job.id for job in created[:: max(1, len(created) // 20)]]
    services.close()
    port = free_port()
    server = start_server(data_dir, port, run_jobs=False)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            status, first_page = [], []
            for n in range(requests):
                t = time.perf_counter()
                client.get(f"/jobs/{ids[n % len(ids)]}").raise_for_status()
                status.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                client.get("/jobs").raise_for_status()
                first_page.append((time.perf_counter() - t) * 1000)
    finally:
        server.terminate()
        server.wait(30)
    s50, s99 = percentiles(status)
    p50, p99 = percentiles(first_page)
    return {"status_p50_ms": s50, "status_p99_ms": s99, "list_p50_ms": p50, "list_p99_ms": p99}


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


def _wait_staged(staged: Path, jobs: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if staged.is_dir() and sum(1 for _ in staged.iterdir()) >= jobs:
            return
        time.sleep(0.02)
    raise RuntimeError("raw Celery baseline did not finish")


CELERY_WORKER = [sys.executable, "-m", "celery", "-A", "celery_baseline", "worker"]
CELERY_WORKER += ["--without-gossip", "--without-mingle"]


def bench_raw_celery(root: Path, repo: Path, jobs: int, broker: str) -> float:
    """Publish N plain Celery tasks; done when every job's output/ is copied."""
    target = root / "raw-celery"
    target.mkdir()
    here = Path(__file__).resolve().parent
    env = {**os.environ, "BENCH_BROKER": broker}
    worker = subprocess.Popen(
        [*CELERY_WORKER, "-c", "2", "-P", "prefork", "-Q", "bench-raw", "--loglevel", "WARNING"],
        cwd=here,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.environ["BENCH_BROKER"] = broker
    sys.path.insert(0, str(here))
    from celery_baseline import app  # the worker's own configuration (queue arguments)

    app.conf.broker_url = broker
    try:
        time.sleep(3)  # the worker connects and declares its queue
        started = time.perf_counter()
        with app.producer_or_acquire() as producer:
            for n in range(jobs):
                app.send_task(
                    "bench.job",
                    args=[str(target), str(repo / "run.sh"), n],
                    queue="bench-raw",
                    routing_key="bench-raw",
                    producer=producer,
                )
        _wait_staged(target / "staged", jobs)
        return time.perf_counter() - started
    finally:
        worker.terminate()
        worker.wait(30)
        app.close()


def bench_dps_celery(root: Path, repo: Path, jobs: int, broker: str) -> tuple[float, dict]:
    """opendps with executor celery: one server, two workers of concurrency 1."""
    from cryptography.fernet import Fernet

    port = free_port()
    config = root / "celery.yml"
    config.write_text(
        "executor: celery\n"
        f"broker_url: {broker}\n"
        f"database_url: sqlite:///{root / 'celery-shared.db'}\n"
        f"storage_url: {root / 'celery-storage'}\n"
        f"secret_key: {Fernet.generate_key().decode()}\n"
        f"port: {port}\n"
        "queues:\n  - {name: bench, slots: 1, default: true}\n"
    )
    dps = [sys.executable, "-m", "opendps.cli"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    server = subprocess.Popen(
        [*dps, "server", "--config", str(config), "--data-dir", str(root / "celery-server")],
        **quiet,  # type: ignore[arg-type]
    )
    workers = [
        subprocess.Popen(
            [*dps, "worker", "--config", str(config), "--data-dir", str(root / f"celery-w{n}")],
            **quiet,  # type: ignore[arg-type]
        )
        for n in (1, 2)
    ]
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=120) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    queues = client.get("/queues").json()["queues"]
                    if len(queues[0]["workers"]) == 2:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("celery cluster did not start")
                time.sleep(0.2)
            yaml = (
                f"algorithm_name: trivial\nalgorithm_version: main\nrepository_url: {repo}\n"
                "run_command: trivial/run.sh\n"
            )
            client.post(
                "/processes", content=yaml, headers={"content-type": "application/yaml"}
            ).raise_for_status()
            while client.get("/processes/trivial").json()["build"]["status"] != "ready":
                time.sleep(0.1)
            # Warm-up job: each worker rebuilds the algorithm once at the recorded commit.
            for _ in range(2):
                client.post("/processes/trivial/execution", json={"inputs": {}})
            _wait_done(client, 2)
            started = time.perf_counter()
            client.post(
                "/batches",
                json={"process": "trivial:main", "jobs": [{"inputs": {}}] * jobs},
            ).raise_for_status()
            _wait_done(client, jobs + 2)
            elapsed = time.perf_counter() - started
            page = client.get("/jobs", params={"limit": 100}).json()["jobs"]
            phases = [client.get(f"/jobs/{j['jobID']}/metrics").json() for j in page]
    finally:
        for process in (server, *workers):
            process.terminate()
        for process in (server, *workers):
            process.wait(60)
    seconds: dict[str, list[float]] = {}
    for metrics in phases:
        for phase, value in (metrics.get("phase_seconds") or {}).items():
            seconds.setdefault(phase, []).append(value)
    medians = {k: round(statistics.median(v) * 1000, 1) for k, v in seconds.items()}
    return elapsed, medians


def _wait_done(client: httpx.Client, total: int) -> None:
    while True:
        done = sum(
            client.get("/jobs", params={"status": s, "limit": 1}).json()["numberMatched"]
            for s in ("successful", "failed", "dismissed")
        )
        if done >= total:
            return
        time.sleep(0.05)


def main_celery(jobs: int) -> None:
    import uuid

    vhost = f"dps-bench-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    broker = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    try:
        with tempfile.TemporaryDirectory(prefix="dps-bench-celery-") as tmp:
            root = Path(tmp)
            repo = make_repo(root / "repo")
            raw = bench_raw_celery(root, repo, jobs, broker)
            dps, phase_ms = bench_dps_celery(root, repo, jobs, broker)
    finally:
        _rabbitmqctl("delete_vhost", vhost)
    print(
        json.dumps(
            {
                "jobs": jobs,
                "raw_celery_seconds": round(raw, 2),
                "raw_celery_jobs_per_second": round(jobs / raw, 1),
                "dps_celery_seconds": round(dps, 2),
                "dps_celery_jobs_per_second": round(jobs / dps, 1),
                "celery_ratio": round(raw / dps, 3),
                "dps_phase_median_ms": phase_ms,
            },
            indent=2,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--store-jobs", type=int, default=100_000)
    parser.add_argument("--celery", action="store_true", help="the scale-out comparison only")
    args = parser.parse_args()
    if args.celery:
        main_celery(args.jobs)
        return
    with tempfile.TemporaryDirectory(prefix="dps-bench-") as tmp:
        root = Path(tmp)
        repo = make_repo(root / "repo")
        baseline = bench_baseline(root, repo, args.jobs)
        dps = bench_dps(root, repo, args.jobs)
        latency = bench_latency(root, args.store_jobs)
    result = {
        "jobs": args.jobs,
        "baseline_seconds": round(baseline, 2),
        "dps_seconds": round(dps, 2),
        "ratio": round(baseline / dps, 3),
        "dps_jobs_per_second": round(args.jobs / dps, 1),
        "store_jobs": args.store_jobs,
        **{k: round(v, 2) for k, v in latency.items()},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""A DPS deployment for tests: a real ``dps server`` plus, in scale-out mode, real
``dps worker`` processes, each with its own data dir.

``Cluster.local(...)``: the embedded mode (SQLite and a storage folder in the server's data
dir, the local executor in the server). ``Cluster.celery(...)``: ``executor: celery`` with
the machine's RabbitMQ (a fresh vhost), a PostgreSQL database and SeaweedFS S3; the server
enqueues and runs no job, workers run them. Both are driven through the same HTTP API, so
one test body runs against either (the backend conformance suite).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml
from cryptography.fernet import Fernet

from opendps.models import Attempt, Job
from opendps.store.db import Database
from opendps.store.jobstore import JobStore
from opendps.store.workers import WorkerStore
from tests.support.live_server import TEST_ENV, LiveServer, kill_processes_using
from tests.support.rabbitmq import RabbitVhost
from tests.support.s3_server import S3Server

WORKER_START_TIMEOUT = 60.0


class WorkerProcess:
    """One ``dps worker`` subprocess (executor celery) with its own data dir."""

    def __init__(
        self,
        data_dir: Path,
        config: Path,
        *,
        queues: Sequence[str] = (),
        concurrency: int | None = None,
        env: Mapping[str, str] | None = None,
        prefix: Sequence[str] = (),
    ) -> None:
        self.prefix = list(prefix)  # e.g. ["ip", "netns", "exec", name]: another "host"
        self.data_dir = data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.queues = list(queues)
        self.concurrency = concurrency
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-worker.log"
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("DPS_")}
        self.env = {**inherited, **TEST_ENV, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [*self.prefix, sys.executable, "-m", "opendps.cli", "worker"]
        argv += ["--config", str(self.config)]
        argv += ["--data-dir", str(self.data_dir)]
        for queue in self.queues:
            argv += ["--queue", queue]
        if self.concurrency is not None:
            argv += ["--concurrency", str(self.concurrency)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    @property
    def pid(self) -> int:
        """The worker's pid (inside ``ip netns exec``, which execs it: the same process)."""
        assert self.process is not None
        return self.process.pid

    def wait_ready(self) -> None:
        """Until Celery says the worker consumes (its heartbeat row is written before)."""
        deadline = time.monotonic() + WORKER_START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"dps worker exited:\n{self.log_tail()}")
            if self.log_path.exists() and " ready." in self.log_path.read_text(errors="replace"):
                return
            time.sleep(0.1)
        raise RuntimeError(f"dps worker not ready:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL, as a lost machine would look (its run commands are left orphaned)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def close(self) -> None:
        self.kill()
        kill_processes_using(self.data_dir)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Cluster:
    """A server, its workers (celery) and a direct view of the store for assertions."""

    name: str
    root: Path
    config: Path
    server: LiveServer
    database_url: str
    workers: list[WorkerProcess] = field(default_factory=list)
    vhost: RabbitVhost | None = None
    _db: Database | None = None

    # -- making one -----------------------------------------------------------------------

    @classmethod
    def local(cls, root: Path, settings: Mapping[str, Any]) -> Cluster:
        data_dir = root / "server-data"
        config = write_config(root / "dps.yml", {"executor": "local", **settings})
        server = LiveServer(data_dir, config=config)
        server.start()
        url = f"sqlite:///{data_dir.resolve() / 'dps.db'}"
        return cls("local", root, config, server, url)

    @classmethod
    def celery(
        cls,
        root: Path,
        settings: Mapping[str, Any],
        *,
        database_url: str,
        vhost: RabbitVhost,
        s3: S3Server | None,
        workers: Sequence[Mapping[str, Any]] = ({},),
    ) -> Cluster:
        values: dict[str, Any] = {
            "executor": "celery",
            "secret_key": Fernet.generate_key().decode(),  # shared by server and workers
            "broker_url": vhost.url,
            "database_url": database_url,
            **settings,
        }
        if s3 is not None:
            values.update(
                storage_url=s3.url(f"{root.name}-{os.getpid()}-{time.time_ns()}"),
                s3_endpoint_url=s3.endpoint_url,
                s3_access_key=s3.key,
                s3_secret_key=s3.secret,
            )
        config = write_config(root / "dps.yml", values)
        server = LiveServer(root / "server-data", config=config)
        server.start()
        cluster = cls("celery", root, config, server, database_url, vhost=vhost)
        for n, options in enumerate(workers):
            cluster.add_worker(f"worker{n + 1}", **options)
        return cluster

    def add_worker(self, name: str, config: Path | None = None, **options: Any) -> WorkerProcess:
        worker = WorkerProcess(self.root / f"{name}-data", config or self.config, **options)
        self.workers.append(worker)
        worker.start()
        worker.wait_ready()
        return worker

    def close(self) -> None:
        for worker in self.workers:
            worker.close()
        self.server.close()
        if self._db is not None:
            self._db.dispose()

    # -- looking inside -------------------------------------------------------------------

    @property
    def db(self) -> Database:
        if self._db is None:
            self._db = Database(self.database_url, migrate=False)
        return self._db

    @property
    def store(self) -> JobStore:
        return JobStore(self.db)

    @property
    def worker_store(self) -> WorkerStore:
        return WorkerStore(self.db)

    def job(self, job_id: str) -> Job:
        return self.store.get_job(job_id)

    def attempts(self, job_id: str) -> list[Attempt]:
        return self.store.attempts(job_id)

    def worker_running(self, job_id: str) -> WorkerProcess:
        """The worker process whose attempt runs ``job_id`` now (celery)."""
        attempt = self.attempts(job_id)[-1]
        pid = int(attempt.worker.rsplit(":", 2)[1])
        return next(w for w in self.workers if w.pid == pid)

    def kill_runner_of(self, job_id: str) -> None:
        """SIGKILL what runs the job: its worker (celery) or its supervisor (local)."""
        if self.name == "celery":
            self.worker_running(job_id).kill()
            return
        attempt = self.attempts(job_id)[-1]
        assert attempt.pid, "the supervisor has not recorded its pid yet"
        psutil.Process(attempt.pid).kill()


def write_config(path: Path, values: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(values), sort_keys=False))
    return path

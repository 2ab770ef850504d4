"""The local executor: claims jobs from the store and starts a supervisor for each.

It runs inside ``dps server`` and in ``dps worker`` processes against the same store.
Slots are per queue over all workers (the store counts running jobs when claiming).
Supervisors are forked by a launcher process (runner/supervisor.py), or, with
``supervisors="thread"`` (tests, run-local), run in a thread of this process. How each
job's command is boxed (``isolation`` setting: bwrap or process) is decided once at start
(runner/sandbox.py) and logged; ``process`` isolation is warned about.

Every running job of this node is checked every few seconds, the ones this executor
started included: a job whose supervisor is gone (or never started within
``heartbeat_timeout``) is recovered, fenced by its attempt number.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from opendps.executors.recovery import (
    is_orphaned,
    node_id,
    process_alive,
    recover_job,
    recover_node,
    worker_alive,
    worker_id,
)
from opendps.models import JobStatus

if TYPE_CHECKING:
    from opendps.service.context import Services

log = logging.getLogger(__name__)
RECOVERY_INTERVAL = 5.0  # seconds between checks that adopted supervisors still live


class LocalExecutor:
    def __init__(
        self,
        services: Services,
        *,
        queues: Iterable[str] | None = None,
        supervisors: str = "process",
        run_builds: bool = True,
    ) -> None:
        self.services = services
        self.settings = services.settings
        names = list(queues) if queues else [q.name for q in self.settings.queues]
        unknown = [n for n in names if self.settings.queue(n) is None]
        if unknown:
            from opendps.errors import NoSuchQueue

            raise NoSuchQueue(f"unknown queue(s) {unknown}")
        self.queue_slots = {n: self.settings.queue(n).slots for n in names}  # type: ignore[union-attr]
        self.supervisors = supervisors
        self.user_caps = {n: self.settings.queue(n).max_running_per_user for n in names}  # type: ignore[union-attr]
        self.run_builds = run_builds
        self.host = os.uname().nodename
        self.node = node_id()
        self.worker = worker_id()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._launcher: subprocess.Popen[bytes] | None = None
        self._launch_lock = threading.Lock()
        self._local: dict[str, int | None] = {}  # job id -> supervisor pid (None: thread)
        self._adopted: dict[str, tuple[int, float | None]] = {}
        self._attempts: dict[str, int] = {}  # job id -> the attempt launched here
        self._local_lock = threading.Lock()
        self._deliveries = None  # DeliveryLoop: notifications and OGC callbacks

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        from opendps.executors.delivery import DeliveryLoop
        from opendps.runner import limits

        self._announce_box()
        self.beat()
        self.recover()
        limits.remove_stale_job_cgroups()  # after recovery has ended what it had to
        self._deliveries = DeliveryLoop(self.services)
        self._deliveries.start()
        if self.run_builds:
            self.services.catalog.requeue_interrupted_builds()
            for n in range(max(1, self.settings.build_slots)):
                self._spawn(self._build_loop, f"dps-builds-{n}")
        if self.supervisors == "process":
            self._start_launcher()
        self._spawn(self._dispatch_loop, "dps-dispatch")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop claiming. Running supervisors carry on (a restart adopts them)."""
        self._stop.set()
        try:
            self.services.worker_store.remove(self.worker)
        except Exception:
            log.warning("could not remove this executor's heartbeat row", exc_info=True)
        self.services.work_available.set()
        if self._deliveries is not None:
            self._deliveries.stop(timeout)
        if self._launcher is not None:  # first, so its reader thread sees EOF
            try:
                if self._launcher.stdin:
                    self._launcher.stdin.close()
                self._launcher.wait(timeout)
            except (OSError, subprocess.TimeoutExpired):
                self._launcher.kill()
        for thread in self._threads:
            thread.join(timeout)

    def _spawn(self, target, name: str) -> None:  # type: ignore[no-untyped-def]
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _announce_box(self) -> None:
        """Decide the isolation once (errors here stop the start) and say what it is."""
        from opendps.runner import limits

        sandbox = self.services.sandbox  # raises ConfigError for an isolation that cannot work
        user = sandbox.user.name if sandbox.user else "the server's own user"
        log.info(
            "jobs run with isolation %s as %s; limits by %s",
            sandbox.isolation,
            user,
            limits.describe_limits(),
            extra={"action": "isolation"},
        )
        if sandbox.isolation == "process":
            log.warning(
                "isolation is 'process': jobs are not boxed (no private /proc, /tmp or mount "
                "namespace; they can see the host's files that %s can read). Install "
                "bubblewrap for the job box (docs/security.md).",
                user,
                extra={"action": "isolation_warning"},
            )
        sandbox.secure_data_dir(self.settings)
        for path in sandbox.unreachable([Path(sys.base_prefix), self.settings.jobs_dir]):
            log.warning(
                "the job user cannot reach %s (a folder on the way is closed to others): "
                "with process isolation, jobs that need it fail; use bwrap",
                path,
                extra={"action": "isolation_warning"},
            )

    # -- recovery -------------------------------------------------------------------------

    def recover(self) -> None:
        for row in self.services.worker_store.list_workers():  # earlier executors of this host
            if row.host == self.host and row.id != self.worker and not worker_alive(row.id):
                self.services.worker_store.remove(row.id)
        adopted, recovered = recover_node(self.services)
        for job, attempt in adopted:
            if attempt.pid:
                with self._local_lock:
                    self._adopted[job.id] = (attempt.pid, attempt.pid_started)
        if adopted or recovered:
            log.info(
                "recovery: adopted %d running job(s), recovered %d",
                len(adopted),
                len(recovered),
                extra={"action": "recovered"},
            )

    def _check_adopted(self) -> None:
        with self._local_lock:
            adopted = dict(self._adopted)
        for job_id, (pid, started) in adopted.items():
            if process_alive(pid, started):
                continue
            with self._local_lock:
                self._adopted.pop(job_id, None)
            job = self.services.job_store.get_job(job_id)
            if not job.status.terminal:
                recover_job(self.services, job, "its supervisor process ended without finishing it")
            self.services.work_available.set()

    def recover_stale(self) -> None:
        """Running jobs of this node with no live supervisor, this executor's own included
        (a supervisor that was killed, a launcher that died before starting one)."""
        timeout = self.settings.heartbeat_timeout
        for job, attempt in self.services.job_store.running_on_node(self.node):
            if attempt is not None and attempt.worker == self.worker and attempt.pid is None:
                with self._local_lock:
                    waiting = job.id in self._local
                if waiting and not is_orphaned(attempt, timeout):
                    continue  # claimed here, its supervisor is starting
            if is_orphaned(attempt, timeout):
                with self._local_lock:
                    self._local.pop(job.id, None)
                    self._adopted.pop(job.id, None)
                recover_job(self.services, job, "its supervisor process was gone", attempt)
                self.services.work_available.set()

    # -- dispatching ----------------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        last_check = last_beat = time.monotonic()
        while not self._stop.is_set():
            self.services.work_available.wait(min(self.settings.poll_interval, self.beat_interval))
            self.services.work_available.clear()
            if self._stop.is_set():
                break
            try:
                self._claim_all()
                if time.monotonic() - last_beat > self.beat_interval:
                    last_beat = time.monotonic()
                    self.beat()
                if time.monotonic() - last_check > RECOVERY_INTERVAL:
                    last_check = time.monotonic()
                    self._check_adopted()
                    self.recover_stale()
                    # Cancelled batches whose background dismissal was cut short (restart).
                    self.services.batches.dismiss_cancelled()
            except Exception:
                log.exception("dispatch loop error", extra={"action": "dispatch_error"})
                time.sleep(self.settings.poll_interval)

    @property
    def beat_interval(self) -> float:
        return max(0.5, min(RECOVERY_INTERVAL, self.settings.heartbeat_timeout / 4))

    def beat(self) -> None:
        """This executor's heartbeat row: GET /queues lists it as a worker of its queues."""
        with self._local_lock:
            running = sorted(set(self._local) | set(self._adopted))
        self.services.worker_store.heartbeat(
            self.worker,
            host=self.host,
            queues=list(self.queue_slots),
            concurrency=sum(self.queue_slots.values()),
            running=running,
        )

    def _claim_all(self) -> None:
        while not self._stop.is_set():
            job = self.services.job_store.claim_next(
                self.queue_slots,
                host=self.host,
                worker=self.worker,
                node=self.node,
                user_caps=self.user_caps,
                fair_share=self.settings.fair_share,
            )
            if job is None:
                return
            log.info(
                "job %s claimed (queue %s)",
                job.id,
                job.queue,
                extra={"action": "job_claimed", "job_id": job.id},
            )
            self._launch(job.id, job.attempts)

    def _launch(self, job_id: str, attempt: int) -> None:
        with self._local_lock:
            self._local[job_id] = None
            self._attempts[job_id] = attempt
        if self.supervisors == "thread":
            thread = threading.Thread(
                target=self._run_in_thread,
                args=(job_id, attempt),
                name=f"job-{job_id[:8]}",
                daemon=True,
            )
            thread.start()
            return
        with self._launch_lock:
            if self._launcher is None or self._launcher.poll() is not None:
                self._start_launcher()
            assert self._launcher is not None and self._launcher.stdin is not None
            self._launcher.stdin.write(f"{job_id} {attempt}\n".encode())
            self._launcher.stdin.flush()

    def _run_in_thread(self, job_id: str, attempt: int) -> None:
        import psutil

        from opendps.runner.run import run_job

        try:
            me = psutil.Process()
            store = self.services.job_store
            if store.record_supervisor(job_id, me.pid, me.create_time(), attempt=attempt):
                run_job(self.services, job_id, attempt=attempt)
        except Exception:
            log.exception("job %s: run_job raised", job_id)
        finally:
            self._job_done(job_id)

    def _job_done(self, job_id: str) -> None:
        with self._local_lock:
            self._local.pop(job_id, None)
        self.services.work_available.set()

    # -- the launcher ---------------------------------------------------------------------

    def _start_launcher(self) -> None:
        env = dict(os.environ)
        env["DPS_LAUNCHER_SETTINGS"] = json.dumps(self.settings.model_dump(mode="json"))
        self._launcher = subprocess.Popen(
            [sys.executable, "-m", "opendps.runner.supervisor"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,  # Ctrl-C on the server must not reach running jobs
        )
        self._spawn(lambda p=self._launcher: self._read_launcher(p), "dps-launcher-reader")

    def _read_launcher(self, launcher: subprocess.Popen[bytes]) -> None:
        assert launcher.stdout is not None
        for raw in launcher.stdout:
            parts = raw.decode().split()
            if len(parts) >= 3 and parts[0] == "exited":
                job_id = parts[1]
                with self._local_lock:
                    launched = self._attempts.pop(job_id, None)
                self._job_done(job_id)
                job = self.services.job_store.get_job(job_id)
                # Only the attempt this executor launched: a later one is someone else's.
                if job.status == JobStatus.RUNNING and launched in (None, job.attempts):
                    recover_job(
                        self.services,
                        job,
                        f"its supervisor exited ({parts[3] if len(parts) > 3 else '?'}) "
                        "without finishing it",
                    )
            elif len(parts) >= 3 and parts[0] == "started":
                with self._local_lock:
                    self._local[parts[1]] = int(parts[2])

    # -- builds ---------------------------------------------------------------------------

    def _build_loop(self) -> None:
        """One of ``build_slots`` threads: each takes the oldest queued build nobody took."""
        from opendps.executors.builds import build_loop

        build_loop(self.services, self._stop)

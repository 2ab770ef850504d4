"""The celery executor: RabbitMQ carries ``run_job(job_id)``, the store decides (DESIGN §10, §13).

The only module that imports celery (the ``celery`` extra).

- **Submit** (API side, :class:`CeleryDispatcher`): the job is in the store first; then
  ``run_job(job_id)`` is published to the Celery queue named after its DPS queue, with the
  job's priority (RabbitMQ priority queues, ``x-max-priority`` 9) and ``task_id`` = job id.
  A job is marked ``enqueued`` before its publish; a failed publish clears the mark, and a
  sweeper publishes accepted jobs without one (broker down at submit, re-queued jobs, jobs
  whose build was not ready when their message was consumed).
- **Workers** (:class:`CeleryWorker`, ``dps worker`` with ``executor: celery``): a Celery
  worker with ``acks_late``, prefetch 1 and a thread pool. The task claims the job in the
  store by compare-and-set (:meth:`JobStore.claim_job`); a redelivered, duplicated or
  cancelled message finds nothing to claim and is acknowledged. The task body is the same
  ``run_job`` as in local mode: time limits, cancel and the job's box are the runner's.
- **Cancel** = the store's flag first (the runner polls it and kills the job's process
  group), then ``revoke`` so a queued message is dropped when it reaches a worker. Revoke
  is not asked to terminate: a thread pool cannot, and revokes are not persistent anyway.
- **Liveness**: workers heartbeat into the store; everyone runs
  :func:`~opendps.executors.liveness.recover_lost_workers` in its maintenance loop.

Why a thread pool: one worker process = one heartbeat = one set of jobs. The runner already
runs each job's command in its own process group with its own limits, so a pool of
processes would add forks without adding isolation, and a pool child killed alone would
leave its jobs with a live heartbeat.

Why no result backend: job state lives in the store only (``task_ignore_result``).

RabbitMQ's ``consumer_timeout`` (default 30 min) closes a channel whose delivery stays
unacknowledged longer, and with ``acks_late`` a message is acknowledged when its job ends:
set it above the longest queue ``time_limit`` plus staging (docs/deploy.md).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from celery import Celery
from kombu import Queue

from opendps.errors import NoSuchJob
from opendps.executors.liveness import recover_lost_job, recover_lost_workers
from opendps.executors.recovery import (
    end_attempt_processes,
    node_id,
    worker_alive,
    worker_id,
)
from opendps.models import JobStatus

if TYPE_CHECKING:
    from opendps.executors.delivery import DeliveryLoop
    from opendps.models import Job
    from opendps.service.context import Services
    from opendps.settings import Settings

log = logging.getLogger(__name__)
TASK_NAME = "opendps.run_job"
MAX_PRIORITY = 9  # DPS priorities 0..9 map 1:1 to AMQP priorities (higher first)
SWEEP_INTERVAL = 2.0  # seconds between sweeps (unenqueued jobs, lost workers)
UNENQUEUED_GRACE = 2.0  # an accepted job this long without a message is (re)published
# Publishing is on the submit path: a broker that is down must not hold a request for long.
PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5}


def celery_app(settings: Settings) -> Celery:
    """A Celery app for opendps' queues; the same configuration for publishers and workers
    (RabbitMQ refuses to redeclare a queue with other arguments)."""
    app = Celery("opendps", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_queues=[
            Queue(q.name, routing_key=q.name, queue_arguments={"x-max-priority": MAX_PRIORITY})
            for q in settings.queues
        ],
        task_create_missing_queues=False,
        task_acks_late=True,
        # The worker's process lost (SIGKILL, OOM): give the message back; the store's
        # attempt cap and compare-and-set claim keep it from looping or running twice.
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # A connection loss makes RabbitMQ redeliver unacknowledged messages. Celery is told
        # to cancel such tasks (its advice for acks_late); a thread pool cannot, so the job
        # carries on, and the redelivered copy finds it claimed and is acknowledged unused.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        task_ignore_result=True,
        result_backend=None,
        task_default_priority=5,
        task_queue_max_priority=MAX_PRIORITY,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        enable_utc=True,
    )
    return app


class CeleryDispatcher:
    """Publishes and revokes for one process (API server or worker), and sweeps."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.app = celery_app(services.settings)
        self._stop = threading.Event()
        self._deliveries: DeliveryLoop | None = None
        self._threads: list[threading.Thread] = []

    # -- publishing -----------------------------------------------------------------------

    def publish(self, jobs: Sequence[Job] | Iterable[Any]) -> int:
        """Publish ``run_job(id)`` for each job (``id``, ``queue``, ``priority``); answers how
        many reached the broker. The others stay unenqueued for the sweeper."""
        jobs = list(jobs)
        if not jobs:
            return 0
        store = self.services.worker_store
        store.mark_enqueued(j.id for j in jobs)  # before: a fast consumer may clear it
        sent = 0
        try:
            with self.app.producer_or_acquire() as producer:
                for job in jobs:
                    self.app.send_task(
                        TASK_NAME,
                        args=[job.id],
                        task_id=job.id,
                        queue=job.queue,
                        routing_key=job.queue,
                        priority=max(0, min(MAX_PRIORITY, int(job.priority))),
                        producer=producer,
                        retry=True,
                        retry_policy=PUBLISH_RETRY,
                    )
                    sent += 1
        except Exception as exc:  # broker down: the sweeper publishes them later
            log.warning(
                "could not publish %d job(s) to the broker (%s); the sweeper will retry",
                len(jobs) - sent,
                exc,
                extra={"action": "publish_failed"},
            )
            for job in jobs[sent:]:
                store.clear_enqueued(job.id)
        return sent

    def revoke(self, job_ids: list[str]) -> None:
        if not job_ids:
            return
        try:
            self.app.control.revoke(job_ids)
        except Exception as exc:  # the store flag already cancels; revoke only saves a trip
            log.warning("revoke failed (%s); the store's cancel flag stands", exc)

    # -- sweeping -------------------------------------------------------------------------

    def sweep(self) -> None:
        """Recover lost workers' jobs, then publish accepted jobs the broker does not hold."""
        recover_lost_workers(self.services)
        while True:
            waiting = self.services.worker_store.unenqueued(older_than=UNENQUEUED_GRACE)
            if not waiting or self.publish(waiting) < len(waiting) or len(waiting) < 1000:
                return

    def start(self, *, run_builds: bool) -> None:
        """The maintenance loop, the delivery loop (notifications and OGC callbacks; every
        process may run one, deliveries are leased) and, in the API server, the build
        slots, in threads."""
        from opendps.executors.delivery import DeliveryLoop

        self._spawn(self._sweep_loop, "dps-celery-sweeper")
        self._deliveries = DeliveryLoop(self.services)
        self._deliveries.start()
        if run_builds:
            from opendps.executors.builds import build_loop

            self.services.catalog.requeue_interrupted_builds()
            for n in range(max(1, self.services.settings.build_slots)):
                self._spawn(lambda: build_loop(self.services, self._stop), f"dps-builds-{n}")

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _sweep_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sweep()
            except Exception:
                log.exception("sweep failed", extra={"action": "sweep_error"})
            self.services.work_available.wait(SWEEP_INTERVAL)
            self.services.work_available.clear()

    def close(self) -> None:
        self._stop.set()
        if self._deliveries is not None:
            self._deliveries.stop()
        self.services.work_available.set()
        for thread in self._threads:
            thread.join(5)
        self.app.close()


class CeleryWorker:
    """``dps worker`` in scale-out mode: a Celery worker whose task is ``run_job``."""

    def __init__(self, services: Services, queues: Sequence[str], concurrency: int) -> None:
        self.services = services
        self.settings = services.settings
        self.queues = list(queues)
        self.concurrency = concurrency
        self.id = worker_id()
        self.host = os.uname().nodename
        self.dispatcher = CeleryDispatcher(services)
        self.app = self.dispatcher.app
        self.app.opendps_worker = self  # type: ignore[attr-defined]
        self._running: dict[str, tuple[int, threading.Event]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        _register_task(self.app)

    # -- the task -------------------------------------------------------------------------

    def handle(self, job_id: str) -> None:
        """Claim ``job_id`` in the store and run it; a message for a job that is not
        ``accepted`` (or not runnable yet) does nothing."""
        from opendps.runner.run import run_job

        store = self.services.job_store
        try:
            job = store.claim_job(job_id, host=self.host, worker=self.id, node=node_id())
        except Exception as exc:  # the store is unreachable: try the message again later
            raise StoreUnavailable(str(exc)) from exc
        if job is None:
            self._not_claimed(job_id)
            return
        log.info(
            "job %s claimed (queue %s, attempt %d)",
            job_id,
            job.queue,
            job.attempts,
            extra={"action": "job_claimed", "job_id": job_id},
        )
        event = threading.Event()
        with self._lock:
            self._running[job_id] = (job.attempts, event)
        try:
            run_job(
                self.services,
                job_id,
                cancel_event=event,
                worker={"id": self.id, "host": self.host},
            )
        except Exception as exc:  # e.g. the store unreachable at the final write
            log.exception("job %s: run_job raised", job_id, extra={"job_id": job_id})
            self._fail_after_crash(job_id, job.attempts, exc)
        finally:
            with self._lock:
                self._running.pop(job_id, None)

    def _not_claimed(self, job_id: str) -> None:
        try:
            job = self.services.job_store.get_job(job_id)
        except NoSuchJob:
            return
        if job.status == JobStatus.ACCEPTED and not job.cancel_requested:
            # Its build is not ready: consume the message; the sweeper publishes it again.
            self.services.worker_store.clear_enqueued(job_id)
        log.info(
            "message for job %s ignored: it is %s",
            job_id,
            job.status.value,
            extra={"action": "message_ignored", "job_id": job_id},
        )

    def _fail_after_crash(self, job_id: str, attempt: int, exc: Exception) -> None:
        """The runner could not record the end: keep trying, so the job is never left
        running under a live heartbeat."""
        for delay in (1, 2, 4, 8, 15, 30):
            try:
                recover_lost_job(
                    self.services, job_id, attempt, f"the runner failed on {self.host}: {exc!r}"
                )
                return
            except Exception:
                time.sleep(delay)

    # -- heartbeats -----------------------------------------------------------------------

    @property
    def interval(self) -> float:
        return max(0.5, min(10.0, self.settings.heartbeat_timeout / 4))

    def beat(self) -> None:
        """Refresh this worker's row, and stop jobs that moved on without it (re-queued
        after this worker was thought lost): their end is no longer this worker's to write."""
        with self._lock:
            running = dict(self._running)
        self.services.worker_store.heartbeat(
            self.id,
            host=self.host,
            queues=self.queues,
            concurrency=self.concurrency,
            running=sorted(running),
        )
        for job_id, (attempt, event) in running.items():
            try:
                job = self.services.job_store.get_job(job_id)
            except NoSuchJob:
                event.set()
                continue
            if job.status != JobStatus.RUNNING or job.attempts != attempt:
                log.warning(
                    "job %s left this worker (now %s, attempt %d): stopping it",
                    job_id,
                    job.status.value,
                    job.attempts,
                    extra={"action": "job_fenced", "job_id": job_id},
                )
                event.set()

    def _heartbeat_loop(self) -> None:
        # Nothing else runs in this thread: a sweep waiting on a lock (held by a partitioned
        # worker's open transaction) must never delay this worker's own heartbeat.
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception as exc:  # the store is unreachable: try again next beat
                log.warning("heartbeat failed: %s", exc, extra={"action": "heartbeat_failed"})

    # -- life cycle -----------------------------------------------------------------------

    def kill_orphaned_runs(self) -> int:
        """Run commands left on this node by a worker that is gone (killed with SIGKILL):
        ended through what the store recorded for their attempt (cgroup, pid and start
        time), never a pid file a job could have written."""
        killed = 0
        for job, attempt in self.services.job_store.running_on_node(node_id()):
            if attempt is None or not attempt.worker or worker_alive(attempt.worker):
                continue
            if attempt.run_pid or attempt.run_cgroup:
                end_attempt_processes(self.services, attempt)
                killed += 1
                log.warning(
                    "ended the run command of job %s left by worker %s",
                    job.id,
                    attempt.worker,
                    extra={"action": "orphan_killed", "job_id": job.id},
                )
        return killed

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT (Celery's warm shutdown: running jobs finish)."""
        self.kill_orphaned_runs()
        self.beat()  # registered before the first message can be claimed
        heartbeat = threading.Thread(target=self._heartbeat_loop, name="dps-heartbeat", daemon=True)
        heartbeat.start()
        self.dispatcher.start(run_builds=False)  # sweeps in its own thread
        try:
            worker = self.app.Worker(
                hostname=f"dps-{os.getpid()}@{self.host}",
                queues=self.queues,
                concurrency=self.concurrency,
                pool="threads",
                loglevel="INFO",
                without_gossip=True,
                without_mingle=True,
                optimization="fair",
                quiet=True,
            )
            worker.start()
        finally:
            self._stop.set()
            heartbeat.join(5)
            with self._lock:
                idle = not self._running
            if idle:
                self.services.worker_store.remove(self.id)
            self.dispatcher.close()


class StoreUnavailable(Exception):
    """The claim could not reach the store; the message is published again."""


def _register_task(app: Celery) -> None:
    @app.task(name=TASK_NAME, bind=True, acks_late=True, ignore_result=True, max_retries=None)
    def run_job_task(task: Any, job_id: str) -> None:
        try:
            task.app.opendps_worker.handle(job_id)
        except StoreUnavailable as exc:
            log.warning("job %s: store unavailable at claim (%s); retrying", job_id, exc)
            raise task.retry(countdown=2)


def default_concurrency(settings: Settings, queues: Sequence[str]) -> int:
    """A queue's ``slots`` is each worker's default concurrency for it (DESIGN §13)."""
    return max(1, sum(q.slots for q in settings.queues if q.name in set(queues)))


def broker_queue_consumers(settings: Settings) -> dict[str, int | None]:
    """Per DPS queue: how many consumers its Celery queue has on the broker, None when the
    queue was never declared (no worker or publisher has touched it). Raises when the
    broker cannot be reached."""
    app = celery_app(settings)
    found: dict[str, int | None] = {}
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=5)
            for queue in settings.queues:
                channel = conn.channel()
                try:
                    _name, _messages, consumers = channel.queue_declare(
                        queue=queue.name, passive=True
                    )
                    found[queue.name] = consumers
                except Exception:  # 404 NOT_FOUND closes the channel
                    found[queue.name] = None
                finally:
                    try:
                        channel.close()
                    except Exception:
                        pass
    finally:
        app.close()
    return found

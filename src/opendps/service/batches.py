"""BatchService: campaigns — submit many jobs at once, watch them (counts, statistics, the
end-of-batch report), cancel or retry them together, and be told when they end.

Every method that reads or changes a batch takes the acting ``user``: another user's batch
answers exactly as a missing one (admins see all), as for jobs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opendps.errors import InvalidInput, NoSuchJob, NoSuchQueue
from opendps.models import Batch, Page
from opendps.service.algorithms import AlgorithmService
from opendps.service.batch_report import build_report
from opendps.service.jobs import JobService, Submission
from opendps.service.notifications import Notify
from opendps.service.policy import Policy
from opendps.service.queries import BatchQuery, check_limit
from opendps.store import BatchStore, JobStore, NotificationStore

log = logging.getLogger(__name__)
REASONS = (
    "exit_code",
    "timeout",
    "oom",
    "cancelled",
    "worker_lost",
    "build_error",
    "localize_error",
    "upload_error",
    "invalid_input",
)


@dataclass(frozen=True)
class Submitted:
    batch: Batch
    job_ids: list[str]  # one per row, in row order (a deduplicated row: the existing job)
    deduped: int  # rows answered by an existing job (dedup), not created again


class BatchService:
    """The one place for batches (every door: /batches, the UI, the CLI through them)."""

    def __init__(
        self,
        store: BatchStore,
        job_store: JobStore,
        job_service: JobService,
        algorithms: AlgorithmService,
        policy: Policy,
        notifications: NotificationStore,
        work_available: threading.Event,
    ) -> None:
        self.store = store
        self.jobs = job_store
        self.job_service = job_service
        self.algorithms = algorithms
        self.policy = policy
        self.notifications = notifications
        self.work_available = work_available

    # -- ownership ------------------------------------------------------------------------

    def _check(self, batch_id: str, user: str) -> None:
        """Another user's batch answers exactly as a missing one (service/policy.py)."""
        missing = NoSuchJob(f"no batch with id {batch_id!r}")
        try:
            owner = self.store.owner_of(batch_id)
        except NoSuchJob:
            raise missing from None
        self.policy.check_visible(user, owner, missing)

    # -- submitting -----------------------------------------------------------------------

    def submit(
        self,
        submissions: Sequence[Submission],
        *,
        user: str,
        where: Sequence[str] = (),
        max_running: int | None = None,
        notify: Notify | None = None,
        base_url: str = "",
    ) -> Submitted:
        """Validate every row, then create the batch and its jobs in one transaction.
        A bad row raises InvalidInput naming it (``where[i]``, e.g. "row 7 (line 8)") and
        the column; nothing is created then."""
        if not submissions:
            raise InvalidInput("a batch needs at least one job")
        if max_running is not None and max_running < 1:
            raise InvalidInput(f"max_running must be at least 1; got {max_running}")

        def label(index: int) -> str:
            return where[index] if where else f"job {index + 1}"

        try:
            batch_id, created = self.job_service.submit_batch(
                submissions, owner=user, label=label, max_running=max_running
            )
        except (InvalidInput, NoSuchQueue) as exc:
            column = exc.context.get("column") or exc.context.get("input")
            if isinstance(exc, NoSuchQueue):
                column = "queue"
            if column and f"column {column!r}" not in exc.message:
                raise type(exc)(
                    exc.message.replace(": ", f", column {column!r}: ", 1), **exc.context
                ) from exc
            raise
        if notify is not None:
            self.notifications.subscribe(
                user,
                base_url=base_url,
                batch_id=batch_id,
                email=notify.email,
                webhook=notify.webhook,
                events=notify.on,
            )
        return Submitted(
            batch=self.jobs.get_batch(batch_id),
            job_ids=[job_id for job_id, _ in created],
            deduped=sum(1 for _, deduped in created if deduped),
        )

    # -- looking --------------------------------------------------------------------------

    def get(self, batch_id: str, *, user: str) -> Batch:
        self._check(batch_id, user)
        return self.jobs.get_batch(batch_id)

    def list(self, query: BatchQuery, user: str) -> Page:
        """The batches ``user`` may see (newest first; an admin's: everyone's)."""
        check_limit(query.limit)
        scope = self.policy.scope(user)
        owner = query.owner or scope
        if scope is not None and owner != scope:
            return Page(items=[], number_matched=0, next_cursor=None)
        return self.jobs.list_batches(owner=owner, limit=query.limit, cursor=query.cursor)

    def stats(self, batch_id: str, *, user: str) -> dict[str, Any]:
        """DESIGN §14 ``stats`` (rate_per_hour, eta_seconds, by_reason, run_seconds,
        peak_memory_bytes)."""
        self._check(batch_id, user)
        return self.store.stats(batch_id)

    def report(self, batch_id: str, *, user: str) -> dict[str, Any]:
        """The end-of-batch report (NCCS style): counts, rates, duration, failures by
        reason with an example message each."""
        self._check(batch_id, user)
        return self.report_of(batch_id)

    def report_of(self, batch_id: str) -> dict[str, Any]:
        """The report without an ownership check (the delivery loop's e-mail)."""
        batch = self.jobs.get_batch(batch_id)
        return build_report(batch, self.store.stats(batch_id), self.store.report_facts(batch_id))

    # -- cancelling and retrying ----------------------------------------------------------

    def cancel(self, batch_id: str, *, user: str) -> Batch:
        """Answers at once: one UPDATE flags every unfinished job (none is claimed after
        it); queued ones are dismissed in the background in chunks, running ones by their
        supervisors within a second or so. The executors finish the dismissals too, so a
        restart in the middle leaves no job behind."""
        self._check(batch_id, user)
        flagged = self.store.request_cancel(batch_id)
        if flagged:
            threading.Thread(
                target=self.dismiss_cancelled, name="dps-batch-cancel", daemon=True
            ).start()
        self.work_available.set()
        return self.jobs.get_batch(batch_id)

    def dismiss_cancelled(self) -> int:
        """Dismiss every queued job whose cancel was requested; answers how many."""
        total = 0
        try:
            while n := self.store.dismiss_cancelled():
                total += n
        except Exception:  # the executors' periodic sweep finishes what is left
            log.exception("dismissing cancelled jobs failed", extra={"action": "dismiss_error"})
        return total

    def retry(
        self,
        batch_id: str,
        *,
        user: str,
        reasons: Sequence[str] = (),
        queue: str | None = None,
    ) -> list[str]:
        """Put the batch's failed and dismissed jobs (only ``reasons``, when given) back in
        the queue — ``queue``, when given (the usual cure for ``oom``). Same jobs, same
        batch: each keeps its history, and every attempt stays in it."""
        self._check(batch_id, user)
        unknown = sorted(set(reasons) - set(REASONS))
        if unknown:
            raise InvalidInput(f"reasons: unknown {unknown}; known: {', '.join(REASONS)}")
        if queue is not None:
            batch = self.jobs.get_batch(batch_id)
            if batch.process:
                algorithm = self.algorithms.get(batch.process)
                spec = self.algorithms.spec_of(algorithm)
                self.job_service.resolve_queue(queue, spec, user)  # exists, user may use it
        ids = self.store.requeue_ended(batch_id, reasons=reasons, queue=queue)
        self.work_available.set()
        return ids

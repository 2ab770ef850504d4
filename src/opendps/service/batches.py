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
from typing import TYPE_CHECKING, Any

from opendps.errors import InvalidInput, NoSuchJob, NoSuchQueue
from opendps.models import Batch
from opendps.service.batch_report import build_report
from opendps.service.jobs import Submission
from opendps.service.notifications import Notify

if TYPE_CHECKING:
    from opendps.service.context import Services

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
    def __init__(self, services: Services) -> None:
        self.services = services
        self.store = services.batch_store
        self.jobs = services.job_store

    # -- ownership ------------------------------------------------------------------------

    def _check(self, batch_id: str, user: str) -> None:
        owner = self.store.owner_of(batch_id)
        if not self.services.settings.auth or owner == user:
            return
        if not self.services.identity.is_admin(user):
            raise NoSuchJob(f"no batch with id {batch_id!r}")  # don't reveal others' batches

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
            batch_id, created = self.services.jobs.submit_batch(
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
            self.services.notification_store.subscribe(
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
        self.services.work_available.set()
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
                algorithm = self.services.algorithms.get(batch.process)
                spec = self.services.algorithms.spec_of(algorithm)
                self.services.jobs.resolve_queue(queue, spec, user)  # exists, user may use it
        ids = self.store.requeue_ended(batch_id, reasons=reasons, queue=queue)
        self.services.work_available.set()
        return ids

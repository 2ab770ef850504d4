"""The delivery loop: notifications and OGC callbacks, from the store, on the executor side.

Every executor process (``dps server`` running jobs, ``dps worker``) runs one. Each turn it

1. *fires* the subscriptions whose job or batch is over: renders what to send (the job's
   statusInfo, the batch document, the batch report, the OGC results) and, in one
   transaction, marks the subscription fired and queues its deliveries — so a restart
   between a job's end and the delivery loses nothing, and two loops never both fire one;
2. *sends* the due deliveries on a small thread pool, each leased to one sender, retried
   with doubling back-off until ``delivery_tries``, so a slow or dead endpoint delays only
   its own deliveries.
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from opendps.executors.senders import TIMEOUT, SendError, send_email, send_webhook
from opendps.models import JobStatus
from opendps.service.batch_report import render_text
from opendps.service.notifications import wanted
from opendps.store.db import utcnow
from opendps.store.notifications import FIRED, PENDING, STARTED, Delivery, NewDelivery, Subscription

if TYPE_CHECKING:
    from opendps.service.context import Services

log = logging.getLogger(__name__)
SENDERS = 8  # deliveries in flight at once per process
LEASE = 2 * TIMEOUT + 30.0  # seconds a sender holds a delivery (longer than one try takes)
MAX_BACKOFF = 600.0


class DeliveryLoop:
    def __init__(self, services: Services, *, interval: float | None = None) -> None:
        self.services = services
        self.settings = services.settings
        self.store = services.notification_store
        self.interval = interval or max(0.2, min(self.settings.poll_interval, 1.0))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(SENDERS, thread_name_prefix="dps-deliver")
        self._in_flight: set[int] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="dps-deliveries", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # a broken row must not stop the deliveries of others
                log.exception("delivery loop error", extra={"action": "delivery_error"})
            self._stop.wait(self.interval)

    def run_once(self) -> None:
        """Fire what is due, then hand due deliveries to the senders."""
        for subscription, status in self.store.due_subscriptions():
            try:
                self._fire(subscription, status)
            except Exception:
                log.exception(
                    "subscription %s could not fire",
                    subscription.id,
                    extra={"action": "fire_error"},
                )
        with self._lock:
            room = SENDERS * 2 - len(self._in_flight)
        if room <= 0:
            return
        for delivery in self.store.lease_due(lease_seconds=LEASE, limit=room):
            with self._lock:
                self._in_flight.add(delivery.id)
            self._pool.submit(self._send, delivery)

    # -- firing ---------------------------------------------------------------------------

    def _fire(self, sub: Subscription, status: str) -> None:
        if sub.batch_id is not None:
            new = self._batch_deliveries(sub)
            self.store.fire(sub.id, PENDING, FIRED, new)
            return
        job = self.services.job_store.get_job(sub.job_id or "")
        if sub.ogc_uris is not None:
            self._fire_ogc(sub, job)
            return
        if not job.status.terminal:
            return  # not over yet (it ended and was retried since it was found)
        new = []
        if wanted(sub.events, job.status != JobStatus.SUCCESSFUL):
            new = self._job_deliveries(sub, job)
        self.store.fire(sub.id, sub.state, FIRED, new)

    def _job_deliveries(self, sub: Subscription, job: Any) -> list[NewDelivery]:
        from opendps.api.documents import status_info

        info = status_info(job, sub.base_url)
        new = []
        if sub.webhook:
            new.append(NewDelivery("webhook", sub.webhook, json.dumps(info, default=str)))
        if sub.email:
            lines = [
                f"Job {job.id} ({job.process_id}) is {job.status.value}.",
                "",
                f"  queue     {job.queue}",
                f"  created   {job.created.isoformat()}",
                f"  started   {job.started.isoformat() if job.started else '-'}",
                f"  finished  {job.finished.isoformat() if job.finished else '-'}",
            ]
            if job.reason:
                lines.append(f"  reason    {job.reason.value} ({job.message or ''})")
            lines += ["", f"{sub.base_url}/jobs/{job.id}"]
            new.append(
                NewDelivery(
                    "email",
                    ",".join(sub.email),
                    "\n".join(lines) + "\n",
                    "text/plain",
                    subject=f"[opendps] job {job.id[:8]} {job.status.value}",
                )
            )
        return new

    def _batch_deliveries(self, sub: Subscription) -> list[NewDelivery]:
        from opendps.api.batches import batch_document

        batch_id = sub.batch_id or ""
        report = self.services.batches.report_of(batch_id)
        counts = report["counts"]
        bad = counts.get("failed", 0) + counts.get("dismissed", 0)
        if not wanted(sub.events, bad > 0):
            return []
        new = []
        if sub.webhook:
            batch = self.services.job_store.get_batch(batch_id)
            document = batch_document(batch, sub.base_url, report["stats"])
            new.append(NewDelivery("webhook", sub.webhook, json.dumps(document, default=str)))
        if sub.email:
            summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
            new.append(
                NewDelivery(
                    "email",
                    ",".join(sub.email),
                    render_text(report) + f"\n{sub.base_url}/batches/{batch_id}\n",
                    "text/plain",
                    subject=f"[opendps] batch {batch_id[:8]} finished: {summary}",
                )
            )
        return new

    def _fire_ogc(self, sub: Subscription, job: Any) -> None:
        """OGC 1.0 callbacks: inProgressUri once it runs, successUri / failedUri at its end."""
        from opendps.api.documents import status_info

        uris = sub.ogc_uris or {}
        new = []
        if sub.state == PENDING and "inProgressUri" in uris:
            info = status_info(job, sub.base_url)
            info["status"] = JobStatus.RUNNING.value  # it ran, even if it is over already
            new.append(NewDelivery("webhook", uris["inProgressUri"], json.dumps(info, default=str)))
        if not job.status.terminal:
            self.store.fire(sub.id, PENDING, STARTED, new)
            return
        if job.status == JobStatus.SUCCESSFUL and "successUri" in uris:
            from opendps.api.ogc.results import stored_results

            document = stored_results(self.services, job, sub.base_url, None)
            new.append(
                NewDelivery("webhook", uris["successUri"], json.dumps(document, default=str))
            )
        elif job.status == JobStatus.FAILED and "failedUri" in uris:
            from opendps.api.ogc.results import failure_response

            body = bytes(failure_response(job, sub.base_url, None).body).decode()
            new.append(NewDelivery("webhook", uris["failedUri"], body))
        self.store.fire(sub.id, sub.state, FIRED, new)

    # -- sending --------------------------------------------------------------------------

    def _send(self, delivery: Delivery) -> None:
        try:
            if delivery.kind == "email":
                send_email(
                    self.settings,
                    delivery.target.split(","),
                    delivery.subject or "[opendps]",
                    delivery.body,
                )
            else:
                send_webhook(self.settings, delivery.target, delivery.body, delivery.content_type)
        except SendError as exc:
            tries = delivery.tries + 1
            give_up = exc.final or tries >= self.settings.delivery_tries
            backoff = min(self.settings.delivery_backoff * 2 ** (tries - 1), MAX_BACKOFF)
            retry_at = None if give_up else utcnow() + timedelta(seconds=backoff)
            self.store.failed_try(delivery.id, str(exc), retry_at)
            log.warning(
                "delivery %s (%s) try %d failed: %s%s",
                delivery.id,
                delivery.kind,
                tries,
                exc,
                "; giving up" if give_up else "",
                extra={"action": "delivery_failed"},
            )
        except Exception as exc:  # a bug in a sender: keep the delivery, try it later
            log.exception("delivery %s failed", delivery.id)
            self.store.failed_try(
                delivery.id, f"{type(exc).__name__}: {exc}", utcnow() + timedelta(seconds=60)
            )
        else:
            self.store.delivered(delivery.id)
            log.info(
                "delivery %s (%s) sent", delivery.id, delivery.kind, extra={"action": "delivered"}
            )
        finally:
            with self._lock:
                self._in_flight.discard(delivery.id)

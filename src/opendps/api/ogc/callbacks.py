"""Callbacks (the OGC 1.0 ``callback`` class): an execute request's ``subscriber`` URIs
are POSTed to as its job changes state.

- ``inProgressUri``: the statusInfo, when the job starts running;
- ``successUri``: the results document (every output), when it succeeds;
- ``failedUri``: the exception document, when it fails.

A thread of the API process watches the jobs that have subscribers (it stops when none are
left). Each notification is tried three times. Subscriptions live in memory: a server
restart forgets the pending ones (the request itself is kept in the job's history).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from opendps.api.documents import status_info
from opendps.errors import InvalidInput
from opendps.models import JobStatus
from opendps.net.safety import UnsafeUrl, UrlPolicy

log = logging.getLogger(__name__)
URI_KEYS = ("successUri", "failedUri", "inProgressUri")
POLL_SECONDS = 0.5
TRIES = 3
TIMEOUT = 10.0


def check_subscriber(subscriber: dict[str, Any], policy: UrlPolicy | None = None) -> dict[str, str]:
    """The subscriber's http(s) URIs (``successUrl``, the schema's typo, is accepted);
    loopback and private addresses only where the policy allows them."""
    if "successUrl" in subscriber and "successUri" not in subscriber:
        subscriber = {**subscriber, "successUri": subscriber["successUrl"]}
    uris = {}
    for key in URI_KEYS:
        value = subscriber.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value.startswith(("http://", "https://")):
            raise InvalidInput(f"subscriber.{key} must be an http or https URL; got {value!r}")
        if policy is not None:
            policy.check_host_literal(value, f"subscriber.{key}")
        uris[key] = value
    return uris


@dataclass
class _Watch:
    uris: dict[str, str]
    base: str
    user: str
    sent: set[str] = field(default_factory=set)


class Notifier:
    """Watches jobs with subscribers and POSTs their state changes."""

    def __init__(self, services: Any) -> None:
        self.services = services
        self._watches: dict[str, _Watch] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, job_id: str, uris: dict[str, str], base: str, user: str) -> None:
        with self._lock:
            self._watches[job_id] = _Watch(uris, base, user)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="dps-ogc-callbacks", daemon=True
                )
                self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._lock:
                if not self._watches:
                    self._thread = None
                    return
                watches = dict(self._watches)
            for job_id, watch in watches.items():
                try:
                    if self._check(job_id, watch):
                        with self._lock:
                            self._watches.pop(job_id, None)
                except Exception:  # a broken job or subscriber must not stop the others
                    log.exception(
                        "callback for job %s failed",
                        job_id,
                        extra={"action": "callback_error", "job_id": job_id},
                    )
                    with self._lock:
                        self._watches.pop(job_id, None)
            time.sleep(POLL_SECONDS)

    def _check(self, job_id: str, watch: _Watch) -> bool:
        """Send what is due; True when the job needs no more watching."""
        job = self.services.jobs.get(job_id, watch.user)
        if (
            job.status != JobStatus.ACCEPTED
            and "inProgressUri" in watch.uris
            and "inProgressUri" not in watch.sent
        ):
            watch.sent.add("inProgressUri")
            info = status_info(job, watch.base)
            if job.status.terminal:
                info["status"] = JobStatus.RUNNING.value  # it ran, even if briefly
            self._post(watch.uris["inProgressUri"], info, job_id)
        if not job.status.terminal:
            return False
        if job.status == JobStatus.SUCCESSFUL and "successUri" in watch.uris:
            from opendps.api.ogc.results import stored_results

            document = stored_results(self.services, job, watch.base, watch.user)
            self._post(watch.uris["successUri"], document, job_id)
        elif job.status == JobStatus.FAILED and "failedUri" in watch.uris:
            from opendps.api.ogc.results import failure_response

            body = failure_response(job, watch.base, None).body
            self._post(watch.uris["failedUri"], body, job_id)
        return True

    def _post(self, uri: str, body: Any, job_id: str) -> None:
        headers = {"Content-Type": "application/json"}
        content = body if isinstance(body, bytes) else None
        policy = UrlPolicy.from_settings(self.services.settings)
        for attempt in range(1, TRIES + 1):
            try:
                # Checked again on every request sent: the name's address, and redirects.
                with policy.client("callback", timeout=TIMEOUT) as client:
                    if content is not None:
                        response = client.post(uri, content=content, headers=headers)
                    else:
                        response = client.post(uri, json=body)
                if response.status_code < 500:
                    log.info(
                        "callback %s for job %s answered %s",
                        uri,
                        job_id,
                        response.status_code,
                        extra={"action": "callback_sent", "job_id": job_id},
                    )
                    return
            except UnsafeUrl as exc:
                log.warning(
                    "callback for job %s refused: %s",
                    job_id,
                    exc.message,
                    extra={"action": "callback_refused", "job_id": job_id},
                )
                return
            except httpx.HTTPError as exc:
                log.warning("callback %s for job %s: %s (try %d)", uri, job_id, exc, attempt)
            time.sleep(min(2.0**attempt, 10.0))

"""Notifications (DESIGN §14): e-mail through a real SMTP server (aiosmtpd) started here,
webhooks to a real local HTTP server, both sent by the delivery loop from rows in the store.

Jobs are moved through the store's own transitions, so "the last job ends" is exact; the
delivery loop is the one every executor runs."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient

from opendps.api.app import create_app
from opendps.builtins import BUILTIN_SPECS
from opendps.executors.delivery import DeliveryLoop
from opendps.models import Job, JobStatus, Reason
from opendps.service.context import Services
from opendps.service.jobs import Submission
from opendps.service.notifications import Notify
from opendps.settings import QueueConfig
from tests.support.dps import BACKENDS, fast_settings, wait_until
from tests.support.live_server import free_port

PROCESS = "hello-world:1.0.0"
QUEUES = [QueueConfig(name="big", slots=50, default=True)]


class Mailbox:
    """A real SMTP server on 127.0.0.1 that keeps every message it is sent."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        mailbox = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                message = message_from_bytes(envelope.content)
                mailbox.messages.append((time.monotonic(), envelope.rcpt_tos, message))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()


class Hooks:
    """A real HTTP server: POST /<name> is recorded; ``fail(name, n)`` answers 500 to the
    next n posts, ``slow(name, s)`` waits s seconds before answering."""

    def __init__(self) -> None:
        self.posts: list[tuple[float, str, Any]] = []
        self.failures: dict[str, int] = {}
        self.delays: dict[str, float] = {}
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                name = self.path.lstrip("/")
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(hooks.delays.get(name, 0))
                hooks.posts.append((time.monotonic(), name, json.loads(body)))
                if hooks.failures.get(name, 0) > 0:
                    hooks.failures[name] -= 1
                    self.send_response(500)
                else:
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{name}"

    def of(self, name: str) -> list[Any]:
        return [body for _, n, body in self.posts if n == name]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    yield box
    box.close()


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    server = Hooks()
    yield server
    server.close()


def open_services(
    data_dir: Path, smtp_port: int | None = None, db_url: str | None = None
) -> Services:
    settings = fast_settings(
        data_dir,
        **({"database_url": db_url} if db_url else {}),
        queues=QUEUES,
        smtp_url=f"smtp://127.0.0.1:{smtp_port}" if smtp_port else None,
        mail_from="dps@example.org",
        delivery_backoff=0.2,
    )
    services = Services(settings)
    services.catalog.sync_queues(settings.queues)
    for spec in BUILTIN_SPECS:
        services.algorithms.ensure_builtin(spec)
    return services


@pytest.fixture
def dps(tmp_path: Path, mailbox: Mailbox) -> Iterator[Services]:
    services = open_services(tmp_path / "dps", mailbox.port)
    yield services
    services.close()


@pytest.fixture
def loop(dps: Services) -> Iterator[DeliveryLoop]:
    delivery = DeliveryLoop(dps, interval=0.1)
    delivery.start()
    yield delivery
    delivery.stop()


def run_all(services: Services, outcome: list[tuple[JobStatus, Reason | None]]) -> list[Job]:
    """Claim the queued jobs and end them as ``outcome`` says, in order."""
    ended = []
    for status, reason in outcome:
        job = services.job_store.claim_next({"big": 50}, host="t", worker="w")
        assert job is not None
        ended.append(
            services.job_store.transition(
                job.id,
                status,
                allowed_from=[JobStatus.RUNNING],
                reason=reason,
                message="killed at 8 GB" if reason == Reason.OOM else None,
            )
        )
    return ended


def submit_batch(services: Services, n: int, notify: Notify) -> str:
    submitted = services.batches.submit(
        [Submission(process_id=PROCESS, inputs={"name": f"n{i}"}) for i in range(n)],
        user="anonymous",
        notify=notify,
        base_url="http://dps.example.org",
    )
    return submitted.batch.id


OK = (JobStatus.SUCCESSFUL, None)
OOM = (JobStatus.FAILED, Reason.OOM)


def test_a_batch_sends_one_email_with_its_report_when_its_last_job_ends(
    dps: Services, loop: DeliveryLoop, mailbox: Mailbox
) -> None:
    batch_id = submit_batch(dps, 5, Notify(email=("ada@example.org", "bob@example.org")))
    run_all(dps, [OK, OK, OOM, OK])
    time.sleep(1.0)  # the loop ran about ten times with one job still queued
    assert mailbox.messages == []
    run_all(dps, [OK])
    wait_until(lambda: mailbox.messages, 20, what="the batch's e-mail")
    time.sleep(1.0)
    assert len(mailbox.messages) == 1  # exactly one, also after more turns of the loop
    _, recipients, message = mailbox.messages[0]
    assert recipients == ["ada@example.org", "bob@example.org"]
    assert message["From"] == "dps@example.org"
    assert batch_id[:8] in message["Subject"] and "4 successful, 1 failed" in message["Subject"]
    body = message.get_payload()
    assert "successful  4" in body and "failed      1" in body
    assert "oom" in body and "killed at 8 GB" in body  # failures by reason, with an example
    assert f"http://dps.example.org/batches/{batch_id}" in body


def test_on_failed_only_tells_of_batches_with_failures(
    dps: Services, loop: DeliveryLoop, mailbox: Mailbox
) -> None:
    submit_batch(dps, 2, Notify(email=("ada@example.org",), on=("failed",)))
    run_all(dps, [OK, OK])
    failing = submit_batch(dps, 2, Notify(email=("ada@example.org",), on=("failed",)))
    run_all(dps, [OK, OOM])
    wait_until(lambda: mailbox.messages, 20, what="the failing batch's e-mail")
    time.sleep(0.5)
    assert [m[2]["Subject"] for m in mailbox.messages] == [
        f"[opendps] batch {failing[:8]} finished: 1 successful, 1 failed"
    ]


def test_a_job_sends_one_email_and_one_webhook_when_it_ends(
    dps: Services, loop: DeliveryLoop, mailbox: Mailbox, hooks: Hooks
) -> None:
    app = create_app(dps.settings, run_jobs=False)
    with TestClient(app) as http:
        answer = http.post(
            f"/processes/{PROCESS}/execution",
            json={
                "inputs": {"name": "x"},
                "notify": {"email": ["ada@example.org"], "webhook": hooks.url("job")},
            },
            headers={"Prefer": "respond-async"},
        )
        assert answer.status_code == 201, answer.text
        job_id = answer.json()["jobID"]
        refused = http.post(
            f"/processes/{PROCESS}/execution",
            json={"inputs": {"name": "x"}, "notify": {"webhook": "ftp://x"}},
            headers={"Prefer": "respond-async"},
        )
        assert refused.status_code == 400 and "notify.webhook" in refused.json()["detail"]
    time.sleep(0.5)
    assert mailbox.messages == [] and hooks.posts == []
    run_all(dps, [OOM])
    wait_until(lambda: mailbox.messages and hooks.of("job"), 20, what="the job's messages")
    time.sleep(0.5)
    assert len(mailbox.messages) == 1 and len(hooks.of("job")) == 1
    assert mailbox.messages[0][2]["Subject"] == f"[opendps] job {job_id[:8]} failed"
    status = hooks.of("job")[0]
    assert (status["jobID"], status["status"]) == (job_id, "failed")


def test_a_job_that_runs_a_while_is_told_of_at_its_end_not_before(
    dps: Services, loop: DeliveryLoop, hooks: Hooks
) -> None:
    submitted = dps.jobs.submit(Submission(process_id=PROCESS, inputs={"name": "x"}), owner="u")
    dps.notification_store.subscribe(
        "u", base_url="http://x", job_ids=[submitted.id], webhook=hooks.url("j")
    )
    running = dps.job_store.claim_next({"big": 50}, host="t", worker="w")
    assert running is not None and running.id == submitted.id
    time.sleep(1.0)  # the loop turns about ten times while the job runs
    assert hooks.of("j") == []
    dps.job_store.transition(running.id, JobStatus.SUCCESSFUL, allowed_from=[JobStatus.RUNNING])
    wait_until(lambda: hooks.of("j"), 20, what="the job's webhook")
    assert hooks.of("j")[0]["status"] == "successful"


def test_a_webhook_that_fails_twice_is_tried_again_until_it_answers(
    dps: Services, loop: DeliveryLoop, hooks: Hooks
) -> None:
    hooks.failures["flaky"] = 2
    batch_id = submit_batch(dps, 3, Notify(webhook=hooks.url("flaky")))
    run_all(dps, [OK, OK, OOM])
    wait_until(lambda: len(hooks.of("flaky")) == 3, 30, what="three tries")
    times = [t for t, name, _ in hooks.posts if name == "flaky"]
    assert times[1] - times[0] >= 0.2 and times[2] - times[1] >= 0.4  # back-off doubles
    document = hooks.of("flaky")[-1]
    assert document["batchID"] == batch_id
    assert document["counts"]["successful"] == 2 and document["stats"]["by_reason"] == {"oom": 1}
    wait_until(
        lambda: dps.notification_store.deliveries_of(batch_id=batch_id)[0]["status"] == "sent",
        10,
        what="the delivery to be marked sent",
    )
    (delivery,) = dps.notification_store.deliveries_of(batch_id=batch_id)
    assert delivery["tries"] == 3 and "500" in delivery["last_error"]
    time.sleep(1.0)
    assert len(hooks.of("flaky")) == 3  # no fourth


def test_a_slow_endpoint_delays_no_other(dps: Services, loop: DeliveryLoop, hooks: Hooks) -> None:
    hooks.delays["slow"] = 5.0
    submit_batch(dps, 1, Notify(webhook=hooks.url("slow")))
    run_all(dps, [OK])
    time.sleep(0.5)  # the slow delivery is in flight
    started = time.monotonic()
    submit_batch(dps, 1, Notify(webhook=hooks.url("fast")))
    run_all(dps, [OK])
    wait_until(lambda: hooks.of("fast"), 10, what="the fast endpoint's delivery")
    assert time.monotonic() - started < 3.0


@pytest.mark.parametrize("db_url", BACKENDS, indirect=True)
def test_a_restart_between_the_last_jobs_end_and_the_delivery_still_delivers_once(
    tmp_path: Path, mailbox: Mailbox, hooks: Hooks, db_url: str | None
) -> None:
    data_dir = tmp_path / "dps"
    before = open_services(data_dir, mailbox.port, db_url)
    batch_id = submit_batch(before, 2, Notify(email=("ada@example.org",), webhook=hooks.url("b")))
    run_all(before, [OK, OK])  # the batch ended while no delivery loop ran (a crash)
    before.close()

    after = open_services(data_dir, mailbox.port, db_url)  # the restart: two executors at once
    loops = [DeliveryLoop(after, interval=0.05), DeliveryLoop(after, interval=0.05)]
    try:
        for delivery in loops:
            delivery.start()
        wait_until(lambda: mailbox.messages and hooks.of("b"), 20, what="the deliveries")
        time.sleep(1.0)
    finally:
        for delivery in loops:
            delivery.stop()
        after.close()
    assert len(mailbox.messages) == 1 and len(hooks.of("b")) == 1
    assert hooks.of("b")[0]["batchID"] == batch_id


def test_e_mail_needs_smtp_url_and_addresses(tmp_path: Path) -> None:
    from opendps.errors import InvalidInput
    from opendps.service.notifications import parse_notify

    services = open_services(tmp_path / "nomail")
    try:
        with pytest.raises(InvalidInput, match="smtp_url"):
            parse_notify({"email": ["a@b.org"]}, services.settings)
        with pytest.raises(InvalidInput, match="not an e-mail address"):
            parse_notify({"webhook": "https://x", "email": ["nobody"]}, services.settings)
        with pytest.raises(InvalidInput, match=r"notify\.on"):
            parse_notify({"webhook": "https://x", "on": ["sometimes"]}, services.settings)
        assert parse_notify({"webhook": "https://x"}, services.settings) == Notify(
            webhook="https://x"
        )
    finally:
        services.close()


def test_e_mail_logs_in_with_the_credentials_of_smtp_url(tmp_path: Path) -> None:
    from aiosmtpd.smtp import AuthResult, LoginPassword

    received: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope)
            return "250 OK"

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"dps", b"s3cret")
        return AuthResult(success=ok)

    port = free_port()
    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=False,  # loopback only; STARTTLS itself is not exercised here
    )
    controller.start()
    try:
        from opendps.executors.senders import send_email

        good = fast_settings(tmp_path / "a", smtp_url=f"smtp://dps:s3cret@127.0.0.1:{port}")
        send_email(good, ["ada@example.org"], "hello", "body")
        assert len(received) == 1
    finally:
        controller.stop()

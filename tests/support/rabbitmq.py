"""RabbitMQ for tests: the machine's broker on 127.0.0.1:5672 (guest/guest), one fresh
vhost per test, deleted afterwards (``rabbitmqctl``).

Without a broker or ``rabbitmqctl`` the tests that need it skip, unless ``CI=true``: then
they fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

HOST, PORT = "127.0.0.1", 5672


@dataclass(frozen=True)
class RabbitVhost:
    name: str

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{HOST}:{PORT}/{self.name}"

    def connections(self) -> list[str]:
        """The pids (``<rabbit@host.1.2.3>``) of the client connections to this vhost."""
        out = rabbitmqctl("list_connections", "-q", "--no-table-headers", "vhost", "pid")
        return [
            line.split("\t")[1].strip()
            for line in out.splitlines()
            if "\t" in line and line.split("\t")[0].strip() == self.name
        ]

    def close_connections(self, reason: str = "test") -> int:
        """Close every client connection to this vhost, as a broker restart would."""
        pids = self.connections()
        for pid in pids:
            rabbitmqctl("close_connection", pid, reason)
        return len(pids)

    def queue_depth(self, queue: str) -> int:
        out = rabbitmqctl(
            "list_queues", "-q", "--no-table-headers", "-p", self.name, "name", "messages"
        )
        for line in out.splitlines():
            parts = line.split("\t")
            if parts[0].strip() == queue:
                return int(parts[1])
        return 0


def rabbitmqctl(*args: str) -> str:
    done = subprocess.run(
        ["rabbitmqctl", *args], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"RabbitMQ unavailable in CI: {reason}")
    pytest.skip(f"RabbitMQ unavailable: {reason}")


def _broker_reachable() -> str | None:
    if shutil.which("rabbitmqctl") is None:
        return "no rabbitmqctl on PATH (apt-get install rabbitmq-server)"
    try:
        with socket.create_connection((HOST, PORT), timeout=2):
            return None
    except OSError as exc:
        return f"nothing listens on {HOST}:{PORT} ({exc})"


def new_vhost(name: str | None = None) -> RabbitVhost:
    vhost = RabbitVhost(name or f"dps-test-{uuid.uuid4().hex[:12]}")
    rabbitmqctl("add_vhost", vhost.name)
    rabbitmqctl("set_permissions", "-p", vhost.name, "guest", ".*", ".*", ".*")
    return vhost


def delete_vhost(vhost: RabbitVhost) -> None:
    try:
        rabbitmqctl("delete_vhost", vhost.name)
    except RuntimeError:
        pass  # never created (a test of a missing vhost), or gone already


@pytest.fixture
def rabbitmq_vhost() -> Iterator[RabbitVhost]:
    """A fresh vhost on the machine's RabbitMQ (guest may use it), deleted afterwards."""
    why = _broker_reachable()
    if why:
        _unavailable(why)
    vhost = new_vhost()
    try:
        yield vhost
    finally:
        delete_vhost(vhost)

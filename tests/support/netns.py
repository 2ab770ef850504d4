"""A separate "host" for a test worker: a network namespace joined to this one by a veth
pair, whose link a test can cut (a network partition) and restore.

The shared services listen on 127.0.0.1 only, so :class:`TcpRelay` listens on the host end
of the veth pair and forwards to them; from inside the namespace the database, broker and
S3 are at ``Namespace.host_ip``. Needs root and ``ip`` (iproute2); otherwise the tests
skip, and fail under ``CI=true``.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator

import pytest


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class Namespace:
    """``ip netns`` + a veth pair on a random /30 of 10.0.0.0/8."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.name = f"dps-{tag}"
        self.host_if, self.ns_if = f"vh{tag}", f"vn{tag}"
        a, b = random.randrange(100, 250), random.randrange(0, 63) * 4
        self.host_ip, self.ns_ip = (
            f"10.{a}.{b // 256}.{b % 256 + 1}",
            f"10.{a}.{b // 256}.{b % 256 + 2}",
        )

    def create(self) -> None:
        _ip("netns", "add", self.name)
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        _ip("link", "set", self.ns_if, "netns", self.name)
        _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        inside = ("netns", "exec", self.name, "ip")
        _ip(*inside, "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if)
        _ip(*inside, "link", "set", self.ns_if, "up")
        _ip(*inside, "link", "set", "lo", "up")

    @property
    def prefix(self) -> list[str]:
        """Prepend to a command line to run it inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def cut(self) -> None:
        """Partition: packets between the namespace and the host are dropped (no resets)."""
        _ip("link", "set", self.host_if, "down")

    def restore(self) -> None:
        _ip("link", "set", self.host_if, "up")

    def delete(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=30)


class TcpRelay:
    """Accept on ``listen_host:<port>``, forward each connection to ``127.0.0.1:target``."""

    def __init__(self, listen_host: str, target_port: int) -> None:
        self.target_port = target_port
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind((listen_host, 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._closed.set()
        self.server.close()


@pytest.fixture
def netns() -> Iterator[Namespace]:
    """A fresh namespace with its veth link up; removed after the test."""
    why = None
    if os.geteuid() != 0:
        why = "network namespaces need root"
    elif shutil.which("ip") is None:
        why = "no `ip` (apt-get install iproute2)"
    if why:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(why)
        pytest.skip(why)
    namespace = Namespace()
    try:
        namespace.create()
        yield namespace
    finally:
        namespace.delete()

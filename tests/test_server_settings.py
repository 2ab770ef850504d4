"""``dps server`` / ``dps worker`` settings: the config file is honoured, a flag overrides
it only when given, and settings that cannot work are refused at start with what to fix."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.cluster import write_config
from tests.support.live_server import free_port, kill_processes_using

DPS = [sys.executable, "-m", "opendps.cli"]


def start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPS_")}
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "opendps.cli", *argv], env=env, stdout=out, stderr=out
        )


def answers(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            time.sleep(0.2)
    return False


def test_server_listens_where_the_config_file_says_unless_a_flag_says_otherwise(
    tmp_path: Path,
) -> None:
    file_port, flag_port = free_port(), free_port()
    config = write_config(tmp_path / "dps.yml", {"host": "127.0.0.1", "port": file_port})
    for name, extra, port in (
        ("file", [], file_port),
        ("flag", ["--port", str(flag_port)], flag_port),
    ):
        data = tmp_path / name
        server = start(
            ["server", "--config", str(config), "--data-dir", str(data), *extra],
            tmp_path / f"{name}.log",
        )
        try:
            assert answers(port, server), (tmp_path / f"{name}.log").read_text()
        finally:
            server.terminate()
            server.wait(20)
            kill_processes_using(data)


def test_scale_out_without_a_shared_secret_key_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path / "dps.yml", {"executor": "celery"})
    for command in ("server", "worker"):
        done = subprocess.run(
            [*DPS, command, "--config", str(config), "--data-dir", str(tmp_path / command)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2
        assert "secret_key" in done.stderr


def test_an_unknown_executor_is_refused_at_start(tmp_path: Path) -> None:
    config = write_config(tmp_path / "dps.yml", {"executor": "kubernetes"})
    done = subprocess.run(
        [*DPS, "server", "--config", str(config), "--data-dir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "executor" in done.stderr and "'local' or 'celery'" in done.stderr

"""What the store and submit benchmarks share: a throw-away database, a real ``dps server``
on it, and percentiles of timed requests."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

POSTGRES_ADMIN_URL = os.environ.get(
    "DPS_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
QUEUES = ("bench-a", "bench-b", "bench-c", "bench-d")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def new_database(backend: str, root: Path) -> tuple[str, Callable[[], None]]:
    """A fresh database URL of ``backend`` and a function that drops it."""
    if backend == "sqlite":
        return f"sqlite:///{root / 'dps.db'}", lambda: None
    import sqlalchemy as sa

    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"opendps_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    url = sa.make_url(POSTGRES_ADMIN_URL).set(database=name)
    return url.render_as_string(hide_password=False), drop


def server_env(data_dir: Path, database_url: str, *, auth: bool) -> dict[str, str]:
    return {
        **os.environ,
        "DPS_DATABASE_URL": database_url,
        "DPS_RUN_JOBS": "false",
        "DPS_AUTH": str(auth).lower(),
        "DPS_SECRET_KEY": "",
        "DPS_DATA_DIR": str(data_dir),
    }


def write_config(data_dir: Path) -> Path:
    config = data_dir.parent / f"{data_dir.name}.yml"
    lines = ["queues:"] + [
        f"  - {{name: {q}, slots: 2{', default: true' if n == 0 else ''}}}"
        for n, q in enumerate(QUEUES)
    ]
    config.write_text("\n".join(lines) + "\n")
    return config


def start_server(
    data_dir: Path, database_url: str, *, auth: bool = False, run_jobs: bool = False
) -> tuple[subprocess.Popen[bytes], str]:
    """``dps server`` on ``database_url`` (jobs not run unless ``run_jobs``); its base URL."""
    port = free_port()
    env = server_env(data_dir, database_url, auth=auth)
    env["DPS_RUN_JOBS"] = str(run_jobs).lower()
    env.pop("DPS_SECRET_KEY")
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "opendps.cli", "server", "--port", str(port)),
            *("--data-dir", str(data_dir), "--config", str(write_config(data_dir))),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(data_dir.parent / f"{data_dir.name}-server.log", "wb"),  # noqa: SIM115
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dps server exited with {process.returncode}")
        try:
            if httpx.get(f"{base}/conformance").status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("dps server did not start")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {"p50_ms": round(statistics.median(ordered), 2), "p99_ms": round(p99, 2)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time ``pid`` has used so far (Linux /proc)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")

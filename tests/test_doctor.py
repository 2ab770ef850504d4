"""``dps doctor``: one line per check (database, broker, storage, queues), exit 0 only
when all pass — run as the real command against real services."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from opendps.store.db import Database
from tests.support.cluster import WorkerProcess, write_config
from tests.support.rabbitmq import RabbitVhost


def doctor(config: Path, data_dir: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "opendps.cli", "doctor", "--config", str(config)]
    return subprocess.run(
        [*argv, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", **_pythonpath()},
    )


def _pythonpath() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k in ("PYTHONPATH", "HOME")}


def lines(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    found = {}
    for line in result.stdout.splitlines():
        mark, name, *_ = line.split()
        found[name] = mark
    return found


def migrated_sqlite(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    Database(url).dispose()
    return url


def test_a_working_local_setup_passes_every_check(tmp_path: Path) -> None:
    config = write_config(tmp_path / "dps.yml", {"database_url": migrated_sqlite(tmp_path)})
    result = doctor(config, tmp_path / "data")
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines(result) == {"database": "ok", "broker": "ok", "storage": "ok", "queues": "ok"}


def test_an_unmigrated_database_fails_its_check(tmp_path: Path) -> None:
    config = write_config(tmp_path / "dps.yml", {"database_url": f"sqlite:///{tmp_path}/new.db"})
    result = doctor(config, tmp_path / "data")
    assert result.returncode == 1
    assert lines(result)["database"] == "FAIL" and "schema at nothing" in result.stdout


@pytest.mark.slow
def test_celery_queues_pass_only_once_a_worker_serves_them(
    tmp_path: Path, rabbitmq_vhost: RabbitVhost
) -> None:
    config = write_config(
        tmp_path / "dps.yml",
        {
            "executor": "celery",
            "broker_url": rabbitmq_vhost.url,
            "database_url": migrated_sqlite(tmp_path),
            "storage_url": str(tmp_path / "storage"),
            "secret_key": Fernet.generate_key().decode(),
            "queues": [{"name": "q", "slots": 1, "default": True}],
        },
    )
    before = doctor(config, tmp_path / "data")
    assert before.returncode == 1
    assert lines(before) == {"database": "ok", "broker": "ok", "storage": "ok", "queues": "FAIL"}
    assert "no worker serves q" in before.stdout
    worker = WorkerProcess(tmp_path / "worker-data", config)
    try:
        worker.start()
        worker.wait_ready()
        after = doctor(config, tmp_path / "data")
    finally:
        worker.close()
    assert after.returncode == 0, after.stdout
    assert "q: 1 worker(s), 1 consumer(s)" in after.stdout


def test_an_unreachable_broker_fails_the_broker_check(tmp_path: Path) -> None:
    missing = RabbitVhost("dps-test-no-such-vhost")
    config = write_config(
        tmp_path / "dps.yml",
        {
            "executor": "celery",
            "broker_url": missing.url,
            "database_url": migrated_sqlite(tmp_path),
        },
    )
    result = doctor(config, tmp_path / "data")
    assert result.returncode == 1
    assert lines(result)["broker"] == "FAIL" and lines(result)["queues"] == "FAIL"

"""In-process DPS fixtures: settings in tmp_path, services, and a MAAP-style algorithm YAML."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from opendps.models import BuildStatus, Job
from opendps.service.context import Services
from opendps.settings import QueueConfig, Settings


def fast_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings tuned for tests: short polls and kill graces."""
    values: dict[str, object] = {
        "data_dir": data_dir,
        "poll_interval": 0.1,
        "kill_grace": 1.0,
        "download_tries": 2,
        "download_timeout": 5.0,
    }
    values.update(overrides)
    return Settings(**values)


# Parametrize a test (or a module, with ``pytestmark``) over both stores:
# ``@pytest.mark.parametrize("db_url", BACKENDS, indirect=True)``.
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


@pytest.fixture
def db_url(request: pytest.FixtureRequest) -> str | None:
    """The store's URL: None (SQLite in the data dir) unless parametrized with BACKENDS."""
    if getattr(request, "param", "sqlite") == "postgresql":
        return request.getfixturevalue("postgres_url")
    return None


@pytest.fixture
def settings(tmp_path: Path, db_url: str | None) -> Settings:
    if db_url is None:
        return fast_settings(tmp_path / "dps")
    return fast_settings(tmp_path / "dps", database_url=db_url)


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    services = Services(settings)
    services.catalog.sync_queues(settings.queues)
    yield services
    services.close()


def algorithm_yaml(
    repo: Path | str,
    *,
    name: str = "demo",
    version: str = "main",
    run: str = "run.sh",
    build: str | None = None,
    inputs: str = "",
    queue: str | None = None,
) -> str:
    """A MAAP algorithm YAML for a repo made by ``make_algorithm_repo``."""
    repo_name = Path(str(repo)).name
    lines = [
        f"algorithm_name: {name}",
        f"algorithm_version: {version}",
        f"repository_url: {repo}",
        f"run_command: {repo_name}/{run}",
    ]
    if build:
        lines.append(f"build_command: {repo_name}/{build}")
    if queue:
        lines.append(f"queue: {queue}")
    lines.append("inputs:" + (f"\n{inputs}" if inputs else " {}"))
    return "\n".join(lines) + "\n"


def wait_until(
    predicate: Callable[[], object],
    timeout: float = 60.0,
    interval: float = 0.05,
    what: str = "condition",
) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_for_job(services: Services, job_id: str, timeout: float = 60.0) -> Job:
    return wait_until(  # type: ignore[return-value]
        lambda: job if (job := services.job_store.get_job(job_id)).status.terminal else None,
        timeout,
        what=f"job {job_id} to finish",
    )


def wait_for_build(services: Services, process_id: str, timeout: float = 120.0) -> None:
    def ready() -> bool:
        build = services.algorithms.get(process_id).build
        assert build is not None
        if build.status == BuildStatus.FAILED:
            raise AssertionError(f"build failed: {build.message}")
        return build.status == BuildStatus.READY

    wait_until(ready, timeout, what=f"build of {process_id}")


ONE_QUEUE = [QueueConfig(name="q", slots=1, default=True)]

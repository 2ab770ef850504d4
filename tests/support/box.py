"""Boxed DPS fixtures for the attack and limit tests (tests/test_box_*.py).

``boxed`` is a running local executor with ``isolation`` set to the test's parameter
(``bwrap`` or ``process``), as root, so jobs run as the job user. Its data dir lives in a
folder under /tmp that other users may traverse (pytest's own tmp dirs are 0700, which a
process-isolated job user could not enter at all).

Tests that need root or bwrap skip with the reason locally and fail under ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from opendps.executors.local import LocalExecutor
from opendps.registry.spec import parse_registration
from opendps.runner.sandbox import bwrap_available
from opendps.service.context import Services
from opendps.service.jobs import Submission
from opendps.settings import QueueConfig
from tests.support.dps import algorithm_yaml, fast_settings, wait_for_build, wait_for_job

ISOLATIONS = [pytest.param("bwrap", id="bwrap"), pytest.param("process", id="process")]

#: Queues of the boxed DPS: small limits so that the attacks end quickly.
BOX_QUEUES = [
    QueueConfig(name="main", slots=3, default=True, max_processes=200, time_limit=60),
    QueueConfig(name="small", memory="64MB", slots=1, time_limit=30),
    QueueConfig(name="medium", memory="256MB", slots=1),
    QueueConfig(name="forks", slots=1, max_processes=50, time_limit=4),
    QueueConfig(name="short", slots=1, time_limit=2),
    QueueConfig(name="offline", slots=1, network=False, time_limit=30),
]


def require_box(isolation: str) -> None:
    """Skip (fail under CI=true) unless this host can run the box as designed."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (jobs then run as the job user)")
    if isolation == "bwrap" and not bwrap_available():
        missing.append("bwrap that can create namespaces (apt-get install bubblewrap)")
    if missing:
        reason = "needs " + " and ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} - CI must provide it")
        pytest.skip(reason)


@dataclass
class BoxedDPS:
    services: Services
    executor: LocalExecutor
    isolation: str

    @property
    def data_dir(self) -> Path:
        return self.services.settings.data_dir

    def register(self, repo: Path, **kwargs: Any) -> str:
        spec = parse_registration(algorithm_yaml(repo, **kwargs))
        algorithm = self.services.algorithms.register(spec, owner="anonymous", replace=True)
        wait_for_build(self.services, algorithm.process_id)
        return algorithm.process_id

    def submit(self, process_id: str, inputs: dict[str, Any] | None = None, **kw: Any) -> str:
        submission = Submission(process_id, inputs or {}, **kw)
        return self.services.jobs.submit(submission, owner="anonymous").id

    def run(self, process_id: str, inputs: dict[str, Any] | None = None, **kw: Any) -> Any:
        return wait_for_job(self.services, self.submit(process_id, inputs, **kw), timeout=120)

    def output(self, job_id: str, name: str) -> str:
        with self.services.jobs.open_output(job_id, name, "anonymous") as handle:
            return handle.read().decode()


@pytest.fixture
def box_root() -> Iterator[Path]:
    """A folder under /tmp that the job user may traverse (0711)."""
    root = Path(tempfile.mkdtemp(prefix="dps-box-", dir="/tmp"))
    root.chmod(0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def boxed_factory(box_root: Path) -> Iterator[Callable[..., BoxedDPS]]:
    """Factory: ``boxed_factory(isolation, **settings)`` -> a started BoxedDPS."""
    started: list[BoxedDPS] = []

    def make(isolation: str, **overrides: Any) -> BoxedDPS:
        require_box(isolation)
        values: dict[str, Any] = {"queues": BOX_QUEUES, "isolation": isolation}
        values.update(overrides)
        settings = fast_settings(box_root / f"dps{len(started)}", **values)
        services = Services(settings)
        services.catalog.sync_queues(settings.queues)
        executor = LocalExecutor(services)
        executor.start()
        dps = BoxedDPS(services, executor, isolation)
        started.append(dps)
        return dps

    yield make
    for dps in started:
        dps.executor.stop()
        kill_leftovers(dps.data_dir)
        dps.services.close()


@pytest.fixture(params=ISOLATIONS)
def boxed(request: pytest.FixtureRequest, boxed_factory: Callable[..., BoxedDPS]) -> BoxedDPS:
    return boxed_factory(request.param)


def kill_leftovers(data_dir: Path) -> None:
    for process in psutil.process_iter(["cwd"]):
        try:
            if str(data_dir) in (process.info["cwd"] or ""):
                process.kill()
        except psutil.Error:
            pass


def processes_with(marker: str) -> list[int]:
    """Pids whose command line mentions ``marker`` (to count what a job left behind)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in part for part in process.info["cmdline"] or []):
                found.append(process.pid)
        except psutil.Error:
            continue
    return found


def job_cgroups(job_id: str) -> list[Path]:
    """The cgroup folders of a job that still exist, in every hierarchy we use."""
    from opendps.runner import limits

    base = limits._cgroup_base()
    if base is None:
        return []
    folders = [base[1], *(limits._v1_extra_folders() if base[0] == 1 else ())]
    return [f / job_id for f in folders if (f / job_id).is_dir()]

"""Jobs end to end through the real executor, supervisors and runner (no HTTP).

The core scenarios also run on PostgreSQL (``on_both_stores``): the executor, the
launcher and every supervisor process connect to the same database URL."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from opendps.errors import InvalidInput, NoSuchQueue
from opendps.executors.local import LocalExecutor
from opendps.models import JobStatus, Phase, Reason
from opendps.registry.spec import parse_registration
from opendps.service.context import Services
from opendps.service.jobs import Submission
from opendps.settings import QueueConfig
from tests.support.dps import (
    BACKENDS,
    algorithm_yaml,
    fast_settings,
    wait_for_build,
    wait_for_job,
    wait_until,
)

RUN_CHECKS = f"""#!{sys.executable}
import json, os, sys
from pathlib import Path
out = Path("output")
(out / "argv.json").write_text(json.dumps(sys.argv[1:]))
(out / "context.json").write_text(Path("_context.json").read_text())
(out / "inputs.json").write_text(json.dumps(sorted(os.listdir("input"))))
(out / "env.json").write_text(json.dumps({{k: v for k, v in os.environ.items()
                                          if k.startswith(("DPS_", "MAAP_"))}}))
print("hello from the job")
"""


@pytest.fixture
def dps(tmp_path: Path, db_url: str | None) -> Iterator[Services]:
    """Services + a running local executor (process isolation) with small queues."""
    settings = fast_settings(
        tmp_path / "dps",
        queues=[
            QueueConfig(name="main", slots=2, default=True),
            QueueConfig(name="single", slots=1),
            QueueConfig(name="short", slots=2, time_limit=2),
        ],
        **({"database_url": db_url} if db_url else {}),
    )
    services = Services(settings)
    services.catalog.sync_queues(settings.queues)
    executor = LocalExecutor(services)
    executor.start()
    yield services
    executor.stop()
    _kill_leftovers(settings.data_dir)
    services.close()


def _kill_leftovers(data_dir: Path) -> None:
    for process in psutil.process_iter(["cmdline", "cwd"]):
        try:
            if str(data_dir) in (process.info["cwd"] or ""):
                process.kill()
        except psutil.Error:
            pass


on_both_stores = pytest.mark.parametrize("db_url", BACKENDS, indirect=True)


def register(services: Services, repo: Path, **kwargs: Any) -> str:
    spec = parse_registration(algorithm_yaml(repo, **kwargs))
    algorithm = services.algorithms.register(spec, owner="anonymous", replace=True)
    return algorithm.process_id


def submit(
    services: Services, process_id: str, inputs: dict[str, Any] | None = None, **kwargs: Any
) -> str:
    return services.jobs.submit(
        Submission(process_id, inputs or {}, **kwargs), owner="anonymous"
    ).id


def staged(services: Services, job_id: str, name: str) -> bytes:
    with services.jobs.open_output(job_id, name, "anonymous") as handle:
        return handle.read()


def test_build_installs_a_package_that_the_run_script_imports(
    dps: Services, make_algorithm_repo: Callable[..., Path]
) -> None:
    repo = make_algorithm_repo(
        {
            "pkg/pyproject.toml": '[project]\nname = "dpsdemo"\nversion = "1.0"\n'
            "[build-system]\nrequires = []\n"
            'build-backend = "backend"\nbackend-path = ["."]\n',
            "pkg/backend.py": BACKEND,
            "pkg/dpsdemo.py": "ANSWER = 42\n",
            "build.sh": "pip install --no-index --no-build-isolation ./algo/pkg\n",
            "run.sh": "#!/usr/bin/env bash\npython -c 'import dpsdemo; print(dpsdemo.ANSWER)'"
            " > output/answer.txt\n",
        },
        executable=["run.sh"],
    )
    pid = register(dps, repo, build="build.sh")
    wait_for_build(dps, pid)
    job = wait_for_job(dps, submit(dps, pid))
    assert job.status == JobStatus.SUCCESSFUL, (job.message, dps.jobs.logs(job.id, "anonymous"))
    assert staged(dps, job.id, "answer.txt").strip() == b"42"


# A minimal PEP 517 backend so the package installs without network or setuptools.
BACKEND = """
import base64, hashlib, zipfile, os
def _record(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"
def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = "dpsdemo-1.0-py3-none-any.whl"
    files = {"dpsdemo.py": open("dpsdemo.py", "rb").read(),
             "dpsdemo-1.0.dist-info/METADATA":
                 b"Metadata-Version: 2.1\\nName: dpsdemo\\nVersion: 1.0\\n",
             "dpsdemo-1.0.dist-info/WHEEL":
                 b"Wheel-Version: 1.0\\nGenerator: t\\n"
                 b"Root-Is-Purelib: true\\nTag: py3-none-any\\n"}
    records = [_record(n, d) for n, d in files.items()] + ["dpsdemo-1.0.dist-info/RECORD,,"]
    files["dpsdemo-1.0.dist-info/RECORD"] = "\\n".join(records).encode()
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as wheel:
        for n, d in files.items():
            wheel.writestr(n, d)
    return name
"""


@on_both_stores
def test_positional_order_config_inputs_and_list_valued_file_input(
    dps: Services, make_algorithm_repo: Callable[..., Path], http_files: Any
) -> None:
    repo = make_algorithm_repo({"run.py": RUN_CHECKS}, executable=["run.py"])
    inputs = (
        "  file:\n    - name: granules\n"
        "  positional:\n    - name: first\n    - name: optional\n      required: false\n"
        "    - name: third\n      data_type: number\n"
        "  config:\n    - name: settings\n      default: {mode: fast}\n"
    )
    pid = register(dps, repo, run="run.py", inputs=inputs)
    wait_for_build(dps, pid)
    http_files.add("a.tif", b"A" * 10)
    http_files.add("b.tif", b"B" * 20)
    job_id = submit(
        dps,
        pid,
        {
            "granules": [http_files.url("a.tif"), http_files.url("b.tif")],
            "first": "one",
            "third": "3",
        },
    )
    job = wait_for_job(dps, job_id)
    assert job.status == JobStatus.SUCCESSFUL, (job.message, dps.jobs.logs(job.id, "anonymous"))
    assert json.loads(staged(dps, job_id, "argv.json")) == ["one", "", "3"]
    context = json.loads(staged(dps, job_id, "context.json"))
    assert context["settings"] == {"mode": "fast"} and context["third"] == 3
    assert json.loads(staged(dps, job_id, "inputs.json")) == ["a.tif", "b.tif"]
    env = json.loads(staged(dps, job_id, "env.json"))
    assert env["DPS_JOB_ID"] == job_id and env["MAAP_PGT"] == env["DPS_JOB_TOKEN"]
    assert "hello from the job" in dps.jobs.logs(job_id, "anonymous")["stdout"]
    metrics = dps.jobs.metrics(job_id, "anonymous")
    assert metrics["localize"]["bytes"] == 30 and metrics["localize"]["files"] == 2
    assert metrics["peak_memory_bytes"] > 0 and metrics["host"]["cpus"] >= 1
    # the same URL again is a cache hit: no new request reaches the server
    before = http_files.requests("a.tif")
    again = wait_for_job(
        dps, submit(dps, pid, {"granules": http_files.url("a.tif"), "first": "x", "third": 1})
    )
    assert again.status == JobStatus.SUCCESSFUL
    assert http_files.requests("a.tif") == before
    assert dps.jobs.metrics(again.id, "anonymous")["localize"]["cached"] == 1


def test_bad_submissions_are_refused_with_the_input_named(
    dps: Services, make_algorithm_repo: Callable[..., Path]
) -> None:
    repo = make_algorithm_repo({"run.sh": "true\n"})
    inputs = "  positional:\n    - name: count\n      data_type: number\n"
    pid = register(dps, repo, inputs=inputs)
    with pytest.raises(InvalidInput, match="missing required input 'count'"):
        submit(dps, pid, {})
    with pytest.raises(InvalidInput, match=r"unknown input.*'colour'"):
        submit(dps, pid, {"count": 1, "colour": "red"})
    with pytest.raises(InvalidInput, match="input 'count': 'many' is not of type 'number'"):
        submit(dps, pid, {"count": "many"})
    with pytest.raises(NoSuchQueue, match="unknown queue 'nope'"):
        submit(dps, pid, {"count": 1}, queue="nope")


@on_both_stores
def test_non_zero_exit_fails_with_reason_phase_and_logs(
    dps: Services, make_algorithm_repo: Callable[..., Path]
) -> None:
    repo = make_algorithm_repo({"run.sh": "echo about to fail >&2\nexit 3\n"})
    pid = register(dps, repo)
    wait_for_build(dps, pid)
    job = wait_for_job(dps, submit(dps, pid))
    assert (job.status, job.reason, job.phase, job.exit_code) == (
        JobStatus.FAILED,
        Reason.EXIT_CODE,
        Phase.RUN,
        3,
    )
    assert "about to fail" in dps.jobs.logs(job.id, "anonymous")["stderr"]
    assert {f["path"] for f in dps.jobs.outputs(job.id, "anonymous")["outputs"]} >= {"_stderr.txt"}


def test_input_that_404s_fails_in_localize(
    dps: Services, make_algorithm_repo: Callable[..., Path], http_files: Any
) -> None:
    repo = make_algorithm_repo({"run.sh": "true\n"})
    pid = register(dps, repo, inputs="  file:\n    - name: granule\n")
    wait_for_build(dps, pid)
    job = wait_for_job(dps, submit(dps, pid, {"granule": http_files.url("missing.tif")}))
    assert (job.status, job.reason, job.phase) == (
        JobStatus.FAILED,
        Reason.LOCALIZE_ERROR,
        Phase.LOCALIZE,
    )
    assert "404" in (job.message or "") and "missing.tif" in (job.message or "")


@on_both_stores
def test_build_failure_fails_waiting_jobs_and_keeps_the_log(
    dps: Services, make_algorithm_repo: Callable[..., Path]
) -> None:
    repo = make_algorithm_repo({"build.sh": "echo compiling; exit 7\n", "run.sh": "true\n"})
    pid = register(dps, repo, build="build.sh")
    job_id = submit(dps, pid)  # accepted before the build is done: it waits
    job = wait_for_job(dps, job_id)
    assert (job.status, job.reason, job.phase) == (
        JobStatus.FAILED,
        Reason.BUILD_ERROR,
        Phase.BUILD,
    )
    assert "compiling" in dps.algorithms.build_log(pid)
    late = dps.job_store.get_job(submit(dps, pid))  # after the failure: failed at once
    assert late.status == JobStatus.FAILED and late.reason == Reason.BUILD_ERROR


def test_time_limit_kills_the_job(dps: Services, make_algorithm_repo: Callable[..., Path]) -> None:
    repo = make_algorithm_repo({"run.sh": "trap '' TERM\nsleep 60\n"})
    pid = register(dps, repo, queue="short")
    wait_for_build(dps, pid)
    started = time.monotonic()
    job = wait_for_job(dps, submit(dps, pid))
    assert (job.status, job.reason, job.phase) == (JobStatus.FAILED, Reason.TIMEOUT, Phase.RUN)
    assert time.monotonic() - started < 20


def _job_processes(job_id: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["environ"]):
        try:
            if (process.info["environ"] or {}).get("DPS_JOB_ID") == job_id:
                found.append(process)
        except psutil.Error:
            pass
    return found


@on_both_stores
def test_cancel_queued_and_running_jobs(
    dps: Services, make_algorithm_repo: Callable[..., Path]
) -> None:
    repo = make_algorithm_repo({"run.sh": "sleep 60 &\nsleep 60\n"})
    pid = register(dps, repo, queue="single")
    wait_for_build(dps, pid)
    running = submit(dps, pid)
    queued = submit(dps, pid)
    wait_until(lambda: dps.job_store.get_job(running).status == JobStatus.RUNNING, 30)
    wait_until(lambda: len(_job_processes(running)) >= 2, 30, what="the job's processes")
    assert dps.jobs.cancel(queued, "anonymous").status == JobStatus.DISMISSED
    cancelled_at = time.monotonic()
    dps.jobs.cancel(running, "anonymous")
    job = wait_for_job(dps, running, timeout=30)
    assert (job.status, job.reason) == (JobStatus.DISMISSED, Reason.CANCELLED)
    assert time.monotonic() - cancelled_at < 10
    wait_until(lambda: not _job_processes(running), 10, what="the job's process tree to go")
    assert dps.job_store.get_job(queued).started is None  # never ran


@on_both_stores
def test_priority_order_within_a_queue(
    dps: Services, make_algorithm_repo: Callable[..., Path]
) -> None:
    repo = make_algorithm_repo({"run.sh": "sleep 0.2\n"})
    pid = register(dps, repo, queue="single")
    wait_for_build(dps, pid)
    blocker = submit(dps, pid)
    wait_until(lambda: dps.job_store.get_job(blocker).status == JobStatus.RUNNING, 30)
    low = submit(dps, pid, priority=1)
    high = submit(dps, pid, priority=9)
    middle = submit(dps, pid, priority=5)
    finished = [wait_for_job(dps, j) for j in (low, high, middle)]
    order = sorted(finished, key=lambda j: j.started)
    assert [j.id for j in order] == [high, middle, low]


@on_both_stores
def test_queue_slots_bound_concurrency(
    dps: Services, make_algorithm_repo: Callable[..., Path]
) -> None:
    repo = make_algorithm_repo({"run.sh": "sleep 0.5\n"})
    pid = register(dps, repo)  # queue "main": 2 slots
    wait_for_build(dps, pid)
    ids = [submit(dps, pid) for _ in range(6)]
    peak = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        jobs = [dps.job_store.get_job(i) for i in ids]
        peak = max(peak, sum(j.status == JobStatus.RUNNING for j in jobs))
        if all(j.status.terminal for j in jobs):
            break
        time.sleep(0.05)
    assert all(dps.job_store.get_job(i).status == JobStatus.SUCCESSFUL for i in ids)
    assert peak == 2


def test_local_file_inputs_are_refused_when_auth_is_on(
    tmp_path: Path, make_algorithm_repo: Callable[..., Path]
) -> None:
    # A single-machine site with auth: local repositories allowed, local inputs not.
    settings = fast_settings(tmp_path / "dps", auth=True, allow_local_repositories=True)
    services = Services(settings)
    services.catalog.sync_queues(settings.queues)
    services.identity.create_user("alice")
    repo = make_algorithm_repo({"run.sh": "true\n"})
    pid = register(services, repo, inputs="  file:\n    - name: granule\n")
    for value in ("file:///etc/passwd", "/etc/passwd", ["https://example.org/a", "/etc/x"]):
        with pytest.raises(InvalidInput, match="local files"):
            services.jobs.submit(Submission(pid, {"granule": value}), owner="alice")
    job = services.jobs.submit(
        Submission(pid, {"granule": "https://example.org/a.tif"}), owner="alice"
    )
    assert job.status == JobStatus.ACCEPTED
    services.close()

"""Crashes and restarts (DESIGN §9): no job is lost, stuck, or run twice at once."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from tests.support.dps import algorithm_yaml, wait_until
from tests.support.run_log import RunLog

# Each run reports "start <run>" and "end <run>" to a collector outside the box (the job can
# write only its work dir), so the test sees every copy that ever ran and whether two
# overlapped.
RUN = """#!/usr/bin/env bash
run=$(date +%s%N)
{start}
sleep {seconds}
{end}
echo ok > output/done.txt
"""


def _register(
    server: Any, make_repo: Callable[..., Path], run_log: RunLog, seconds: float, name: str = "slow"
) -> str:
    script = RUN.format(
        start=run_log.report("start $run"), end=run_log.report("end $run"), seconds=seconds
    )
    repo = make_repo({"run.sh": script}, executable=["run.sh"], name=name)
    server.client.register(algorithm_yaml(repo, name=name))
    server.client.wait_for_build(f"{name}:main", timeout=120)
    return f"{name}:main"


def _supervisor_pid(server: Any, job_id: str) -> int:
    """The job's supervisor: the nearest ancestor of the job's script that is one
    (a boxed script's parents are bwrap's processes)."""

    def find() -> int | None:
        for process in psutil.process_iter(["environ"]):
            try:
                if (process.info["environ"] or {}).get("DPS_JOB_ID") != job_id:
                    continue
                for parent in process.parents():
                    if "opendps.runner.supervisor" in " ".join(parent.cmdline()):
                        return parent.pid
            except psutil.Error:
                continue
        return None

    return wait_until(find, 30, what="the job's supervisor")  # type: ignore[return-value]


def test_server_killed_with_sigkill_loses_nothing_and_runs_nothing_twice(
    live_server: Any, make_algorithm_repo: Callable[..., Path], run_log: RunLog
) -> None:
    client = live_server.client
    pid = _register(live_server, make_algorithm_repo, run_log, seconds=3)
    running = client.submit(pid, {}, queue="dps-sandbox")["jobID"]  # 1 slot
    queued = client.submit(pid, {}, queue="dps-sandbox")["jobID"]
    wait_until(lambda: client.status(running)["status"] == "running", 30)
    _supervisor_pid(live_server, running)
    live_server.kill()
    live_server.start()
    for job_id in (running, queued):
        assert client.wait(job_id, timeout=60)["status"] == "successful"
    assert client.status(running)["attempts"] == 1  # adopted, not re-run
    lines = " ".join(run_log.lines()).split()
    assert lines.count("start") == 2 and lines.count("end") == 2


def test_a_killed_supervisor_is_recovered_and_its_job_rerun_once(
    live_server: Any, make_algorithm_repo: Callable[..., Path], run_log: RunLog
) -> None:
    client = live_server.client
    pid = _register(live_server, make_algorithm_repo, run_log, seconds=2)
    job_id = client.submit(pid, {})["jobID"]
    supervisor = _supervisor_pid(live_server, job_id)
    os.kill(supervisor, signal.SIGKILL)
    final = client.wait(job_id, timeout=60)
    assert final["status"] == "successful"
    assert final["attempts"] == 2
    entries = run_log.lines()
    # the first copy was killed before the second started: never two at once
    assert [e.split()[0] for e in entries] == ["start", "start", "end"]
    events = [e["message"] or "" for e in client.events(job_id)]
    assert any("re-queued" in m for m in events)


def test_after_the_attempt_cap_a_lost_job_fails_with_worker_lost(
    start_live_server: Callable[..., Any], make_algorithm_repo: Callable[..., Path], run_log: RunLog
) -> None:
    server = start_live_server(env={"DPS_MAX_ATTEMPTS": "1"})
    pid = _register(server, make_algorithm_repo, run_log, seconds=30)
    job_id = server.client.submit(pid, {})["jobID"]
    os.kill(_supervisor_pid(server, job_id), signal.SIGKILL)
    final = server.client.wait(job_id, timeout=60)
    assert (final["status"], final["reason"]) == ("failed", "worker_lost")
    time.sleep(0.5)
    assert server.client.status(job_id)["status"] == "failed"


def test_a_200_mb_input_does_not_grow_the_server_memory(
    live_server: Any, make_algorithm_repo: Callable[..., Path], http_files: Any
) -> None:
    client = live_server.client
    repo = make_algorithm_repo(
        {"run.sh": "#!/bin/sh\nls -l input > output/listing.txt\n"},
        executable=["run.sh"],
        name="big",
    )
    client.register(algorithm_yaml(repo, name="big", inputs="  file:\n    - name: granule\n"))
    client.wait_for_build("big:main", timeout=120)
    http_files.add("big.bin", 200 * 1024 * 1024)
    server = psutil.Process(live_server.process.pid)
    before = server.memory_info().rss
    job_id = client.submit("big:main", {"granule": http_files.url("big.bin")})["jobID"]
    assert client.wait(job_id, timeout=120)["status"] == "successful"
    assert client.metrics(job_id)["localize"]["bytes"] == 200 * 1024 * 1024
    assert server.memory_info().rss - before < 50 * 1024 * 1024

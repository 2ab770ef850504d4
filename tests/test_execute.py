"""execute(): real subprocesses under time limits, cancels and memory limits.

Tree-related tests run twice: with the job's own cgroup (where this host allows one) and
with the session/process-group fallback, forced by refusing the cgroup.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from opendps.runner import limits
from opendps.runner.execute import ExecResult, execute, kill_process_group
from opendps.runner.hostinfo import host_facts

MiB = 2**20
PY = sys.executable
CGROUPS = (limits.CGROUP_V1, limits.CGROUP_V2)


@pytest.fixture(params=["cgroup", "session"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which way the job's processes are tracked: its cgroup, or session + process group."""
    if request.param == "cgroup":
        if limits.memory_control() not in CGROUPS:
            pytest.skip("no writable cgroup memory controller on this host")
    else:
        monkeypatch.setattr(
            limits, "create_job_cgroup", lambda name, memory_limit=None, **limits_: None
        )
    return request.param


def run(tmp_path: Path, argv: list[str], **kwargs: object) -> ExecResult:
    kwargs.setdefault("env", {**os.environ, "LC_ALL": "C"})
    kwargs.setdefault("kill_grace", 0.5)
    return execute(
        argv,
        cwd=tmp_path,
        stdout_path=tmp_path / "_stdout.txt",
        stderr_path=tmp_path / "_stderr.txt",
        **kwargs,  # type: ignore[arg-type]
    )


def bash(script: str) -> list[str]:
    return ["bash", "-c", script]


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for init to reap it)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_for_pid_file(path: Path, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text().strip() if path.exists() else ""
        if text:
            return int(text)
        time.sleep(0.01)
    raise AssertionError(f"{path} never written")


# -- exit, streams, environment --------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 3])
def test_exit_code(tmp_path: Path, code: int) -> None:
    result = run(tmp_path, bash(f"exit {code}"))
    assert result.exit_code == code
    assert result.signal is None
    assert not (result.timed_out or result.cancelled or result.oom)
    assert result.started <= result.finished
    assert result.wall_seconds == pytest.approx(result.finished - result.started, abs=1e-3)


def test_streams_are_appended_to_files(tmp_path: Path) -> None:
    (tmp_path / "_stdout.txt").write_text("earlier\n")
    run(tmp_path, bash("echo out; echo err >&2"))
    assert (tmp_path / "_stdout.txt").read_text() == "earlier\nout\n"
    assert (tmp_path / "_stderr.txt").read_text() == "err\n"


def test_env_and_cwd(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "DPS_JOB_ID": "job-42"}
    run(tmp_path, bash('echo "$DPS_JOB_ID $(pwd) ${HOME:-nohome}"'), env=env)
    assert (tmp_path / "_stdout.txt").read_text() == f"job-42 {tmp_path} nohome\n"


def test_stdin_is_dev_null(tmp_path: Path) -> None:
    result = run(tmp_path, bash('read -r line; echo "read=$?"'), time_limit=5)
    assert (tmp_path / "_stdout.txt").read_text() == "read=1\n"
    assert result.wall_seconds < 2


def test_missing_command_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        run(tmp_path, ["/nonexistent/run.sh"])


def test_fast_exit_is_noticed_at_once(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run(tmp_path, ["true"], sample_interval=5.0)
    assert result.exit_code == 0
    assert time.monotonic() - started < 0.5


def test_on_start_gets_the_pid(tmp_path: Path) -> None:
    seen: list[int] = []
    run(tmp_path, bash("echo $$"), on_start=seen.append)
    assert seen == [int((tmp_path / "_stdout.txt").read_text())]


# -- time limit ------------------------------------------------------------------------------


def test_time_limit_kills_sleep(tmp_path: Path) -> None:
    result = run(tmp_path, ["sleep", "100"], time_limit=0.5)
    assert result.timed_out and not result.cancelled
    assert result.exit_code is None and result.signal == signal.SIGTERM
    assert 0.5 <= result.wall_seconds < 1.5


def test_time_limit_kills_a_command_ignoring_sigterm(tmp_path: Path) -> None:
    script = "trap '' TERM; echo $$ > main.pid; while true; do sleep 0.05; done"
    result = run(tmp_path, bash(script), time_limit=0.5, kill_grace=0.5)
    assert result.timed_out
    assert result.signal == signal.SIGKILL
    assert 1.0 <= result.wall_seconds < 2.0  # limit + grace
    assert not running(int((tmp_path / "main.pid").read_text()))


# -- cancel ----------------------------------------------------------------------------------


def test_cancel_event_kills_the_whole_tree(tmp_path: Path, mode: str) -> None:
    cancel = threading.Event()
    tree: list[int] = []

    def watch(pid: int) -> None:
        def record_then_cancel() -> None:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                children = psutil.Process(pid).children(recursive=True)
                if len(children) >= 2:
                    tree.extend([pid, *(c.pid for c in children)])
                    break
                time.sleep(0.01)
            cancel.set()

        threading.Thread(target=record_then_cancel, daemon=True).start()

    result = run(
        tmp_path, bash("sleep 100 & sleep 100 & wait"), cancel_event=cancel, on_start=watch
    )
    assert result.cancelled and not result.timed_out
    assert len(tree) == 3
    assert result.peak_processes >= 3
    assert result.wall_seconds < 2
    assert [pid for pid in tree if running(pid)] == []


def test_should_cancel_kills_a_double_forked_child(tmp_path: Path, mode: str) -> None:
    calls: list[float] = []

    def should_cancel() -> bool:
        calls.append(time.monotonic())
        return (tmp_path / "bg.pid").exists() and len(calls) >= 2

    script = "(sleep 100 & echo $! > bg.pid); echo $$ > main.pid; sleep 100"
    result = run(tmp_path, bash(script), should_cancel=should_cancel, sample_interval=0.05)
    assert result.cancelled
    background = int((tmp_path / "bg.pid").read_text())
    assert not running(background)
    assert not running(int((tmp_path / "main.pid").read_text()))
    # asked at most about twice a second, even with a fast sample interval
    assert all(b - a >= 0.45 for a, b in itertools.pairwise(calls))


def test_setsid_child_is_ended_through_the_cgroup(tmp_path: Path, mode: str) -> None:
    if mode != "cgroup":
        pytest.skip("a setsid daemon leaves session and group: only a cgroup still sees it")
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    result = run(
        tmp_path, bash("setsid sleep 100 & echo $! > bg.pid; sleep 100"), cancel_event=cancel
    )
    assert result.cancelled
    assert not running(wait_for_pid_file(tmp_path / "bg.pid"))


def test_background_child_of_a_finished_job_is_ended(tmp_path: Path, mode: str) -> None:
    result = run(tmp_path, bash("sleep 100 & echo $! > bg.pid; exit 0"))
    assert result.exit_code == 0
    assert not running(int((tmp_path / "bg.pid").read_text()))
    assert result.wall_seconds < 2


def test_error_in_a_callback_still_ends_the_job(tmp_path: Path, mode: str) -> None:
    pids: list[int] = []

    def fail(pid: int) -> None:
        pids.append(pid)
        raise RuntimeError("store unreachable")

    with pytest.raises(RuntimeError):
        run(tmp_path, bash("sleep 100 & sleep 100"), on_start=fail, job_id="job-err-test")
    assert not running(pids[0])
    assert limits.find_job_cgroup("job-err-test") is None


def test_concurrent_runs_in_threads(tmp_path: Path, mode: str) -> None:
    results: dict[int, ExecResult] = {}

    def one(code: int) -> None:
        work = tmp_path / str(code)
        work.mkdir()
        results[code] = run(work, bash(f"sleep 0.3; exit {code}"))

    threads = [threading.Thread(target=one, args=(code,)) for code in (1, 2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {code: r.exit_code for code, r in results.items()} == {1: 1, 2: 2, 3: 3}


def test_kill_process_group(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        bash("trap '' TERM; sleep 100 & sleep 100 & wait"), start_new_session=True
    )
    try:
        time.sleep(0.2)
        tree = [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))]
        started = time.monotonic()
        kill_process_group(proc.pid, 0.3)
        assert 0.3 <= time.monotonic() - started < 2
        assert proc.wait(timeout=2) == -signal.SIGKILL
        assert [pid for pid in tree if running(pid)] == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# -- measurements ----------------------------------------------------------------------------


def test_peak_memory_of_a_tree(tmp_path: Path, mode: str) -> None:
    hog = f"{PY} -c 'import time; b = bytearray(b\"x\") * (150 * 2**20); time.sleep(0.4)'"
    result = run(tmp_path, bash(f"{hog}; true"), sample_interval=0.1)
    assert result.exit_code == 0
    assert result.peak_memory >= 100 * MiB
    assert result.peak_processes >= 2


def test_cpu_time_of_a_busy_child(tmp_path: Path, mode: str) -> None:
    busy = (
        f"{PY} -c 'import time\nt = time.process_time()\nwhile time.process_time() - t < 0.7: pass'"
    )
    result = run(tmp_path, bash(f"{busy}; true"))
    assert result.exit_code == 0
    assert result.cpu_user + result.cpu_system >= 0.6
    assert result.cpu_user + result.cpu_system < result.wall_seconds * 2 + 0.1


BUSY_NOTING_CPU = """
import os, time
while True:
    t = time.process_time()
    while time.process_time() - t < 0.05:
        pass
    with open("cpu.tmp", "w") as f:
        f.write(str(time.process_time()))
    os.replace("cpu.tmp", "cpu.txt")
"""


def test_cpu_time_of_a_busy_child_killed_at_its_time_limit(tmp_path: Path, mode: str) -> None:
    # The child notes its own CPU time as it goes (the machine may be shared with other tests).
    (tmp_path / "busy.py").write_text(BUSY_NOTING_CPU)
    result = run(tmp_path, bash(f"{PY} busy.py; true"), time_limit=0.8, sample_interval=0.1)
    assert result.timed_out
    noted = float((tmp_path / "cpu.txt").read_text())
    assert noted > 0.1
    assert result.cpu_user + result.cpu_system >= noted - 0.1  # the last sample may lag


def test_memory_limit(tmp_path: Path, mode: str) -> None:
    hog = [PY, "-c", "b = bytearray(b'x') * (300 * 2**20); print('survived')"]
    result = run(tmp_path, hog, memory_limit=100 * MiB, time_limit=20)
    stdout = (tmp_path / "_stdout.txt").read_text()
    assert "survived" not in stdout
    if result.memory_enforcement in CGROUPS:
        assert result.oom
        assert result.signal == signal.SIGKILL
        assert result.peak_memory <= 100 * MiB
    elif result.memory_enforcement == limits.RLIMIT:
        assert not result.oom
        assert result.exit_code == 1
        assert "MemoryError" in (tmp_path / "_stderr.txt").read_text()
    else:
        pytest.skip(f"memory limits unsupported here ({result.memory_enforcement})")
    assert result.memory_enforcement == (
        limits.memory_control() if mode == "cgroup" else limits.RLIMIT
    )


def test_no_memory_limit_reports_no_enforcement(tmp_path: Path, mode: str) -> None:
    result = run(tmp_path, ["true"])
    assert result.memory_enforcement == limits.NONE
    assert not result.oom


def test_job_cgroup_is_removed(tmp_path: Path, mode: str) -> None:
    if mode != "cgroup":
        pytest.skip("no cgroup in this mode")
    seen: list[Path] = []

    def look(pid: int) -> None:
        group = limits.find_job_cgroup("job-cg-test")
        assert group is not None and pid in group.pids()
        seen.append(group.path)

    run(tmp_path, ["sleep", "0.1"], job_id="job-cg-test", on_start=look)
    assert seen and not seen[0].exists()


def test_host_facts() -> None:
    facts = host_facts()
    assert facts["cpus"] >= 1 and facts["memory_total"] > 0
    assert {"hostname", "fqdn", "platform", "kernel", "python", "opendps"} <= set(facts)
    facts["hostname"] = "changed"
    assert host_facts()["hostname"] != "changed"

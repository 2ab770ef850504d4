"""Run one job's command under a time and memory limit, and measure what it used.

The command runs in its own session and process group (``start_new_session``), with stdin
on /dev/null and stdout/stderr appended to files. Where the host allows it the command also
runs in its own cgroup (see :mod:`opendps.runner.limits`); the cgroup then decides which
processes belong to the job, enforces the memory limit, and gives the exact memory peak.
Without one, the job is the main process, its descendants, and every process in its
session or process group (double-forked children keep both, unless they call ``setsid``).

When the main process ends, or on timeout or cancel, every process of the job is ended
(SIGTERM, ``kill_grace`` seconds, then SIGKILL): a job leaves nothing running behind,
not even a background child of a command that succeeded.

CPU time
    ``os.wait4`` on the main process gives the exact CPU of the main process and of every
    descendant that was waited for inside the tree (it is ``RUSAGE_CHILDREN`` for that one
    child, so concurrent ``execute`` calls in one process do not see each other). Processes
    that leave the tree (orphans reaped by init, children killed with their parent) are
    lost to it, so we also sample ``psutil`` CPU times (own + waited-for children) of the
    live tree and take ``max(wait4, last sample)``; processes still alive after the main
    process ended are added on top with their last sampled times. The result is exact for
    well-behaved trees and a close lower bound otherwise.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import psutil

from opendps.runner import limits
from opendps.runner.sandbox import JobUser

log = logging.getLogger(__name__)

#: Seconds between calls of ``should_cancel`` (it may query the job store).
CANCEL_CHECK_INTERVAL = 0.5
#: Seconds between checks whether a signalled job has ended.
_KILL_POLL = 0.02
#: Seconds to wait for SIGKILLed processes to disappear.
_KILL_WAIT = 2.0
#: Seconds between measurements of the job's folder against ``disk_limit``.
DISK_CHECK_INTERVAL = 1.0


@dataclass(frozen=True)
class ExecResult:
    """How a run ended and what it used."""

    exit_code: int | None  # None if killed by a signal
    signal: int | None  # signal that ended the main process, if any
    timed_out: bool
    cancelled: bool
    oom: bool  # killed for exceeding the memory limit (only a cgroup can tell)
    wall_seconds: float
    cpu_user: float  # whole process tree, seconds
    cpu_system: float
    peak_memory: int  # bytes: cgroup peak charge, else sampled peak RSS sum of the tree
    peak_processes: int
    memory_enforcement: str  # "cgroup-v2" | "cgroup-v1" | "rlimit" | "none"
    started: float  # time.time()
    finished: float
    disk_exceeded: bool = False  # stopped: its folder grew past ``disk_limit``


def execute(
    argv: list[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    stdout_path: Path,
    stderr_path: Path,
    time_limit: float | None = None,
    memory_limit: int | None = None,
    kill_grace: float = 5.0,
    should_cancel: Callable[[], bool] | None = None,
    cancel_event: threading.Event | None = None,
    on_start: Callable[[int], None] | None = None,
    sample_interval: float = 0.25,
    job_id: str | None = None,
    cpus: float | None = None,
    max_processes: int | None = None,
    user: JobUser | None = None,
    boxed: bool = False,
    disk_limit: tuple[Path, int] | None = None,
    on_sample: Callable[[int, float], None] | None = None,
) -> ExecResult:
    """Run ``argv`` to its end (or its limit, or a cancel) and measure it.

    ``time_limit`` (seconds) and ``memory_limit`` (bytes) of None or 0 mean no limit;
    ``cpus`` is a CPU quota and ``max_processes`` a cap on forks (both need a cgroup).
    ``memory_enforcement`` says how the memory limit was enforced ("none" without one).
    ``user``: the child drops to that user after joining its cgroup (process isolation as
    root). ``boxed``: ``argv`` starts bwrap, whose own process is spared the SIGTERM of a
    stop so that the job's processes get their grace period (bwrap kills them at once
    when it dies). ``disk_limit`` = (folder, bytes): the run is stopped once the folder
    holds more (checked every ``DISK_CHECK_INTERVAL`` seconds).
    ``on_sample(rss_bytes, cpu_seconds)`` is given each look at the process tree (the
    memory/CPU series, :mod:`opendps.runner.sampling`).
    Raises ``OSError`` if the command cannot be started (not found, not executable).
    """
    group = limits.create_job_cgroup(
        job_id or f"run-{uuid.uuid4().hex[:12]}",
        memory_limit,
        cpus=cpus,
        max_processes=max_processes,
    )
    try:
        started, t0 = time.time(), time.monotonic()
        proc, group, enforcement = _start(
            argv, cwd, env, stdout_path, stderr_path, group, memory_limit, user
        )
        pid = proc.pid
        waiter = _ExitWaiter(pid)
        tree = _TreeSampler(pid, group, on_sample)
        stop: str | None = None
        try:
            if on_start is not None:
                on_start(pid)
            stop = _supervise(
                waiter,
                tree,
                t0,
                time_limit,
                should_cancel,
                cancel_event,
                sample_interval,
                disk_limit,
            )
            if stop is not None:
                tree.sample()  # last look at the CPU of processes the kill will orphan
                end_processes(pid, kill_grace, group, spare=pid if boxed else None)
            waiter.wait(None)
            if tree.sample_leftovers():
                end_processes(pid, kill_grace, group)
        finally:
            if waiter.result is None:  # an exception (or KeyboardInterrupt) above: end it all
                end_processes(pid, 0.0, group)
                waiter.wait(None)
            waiter.close()
            proc.returncode = waiter.returncode  # already reaped: keep Popen from trying again
        wall = time.monotonic() - t0
        return _result(waiter, tree, group, enforcement, stop, started, wall)
    finally:
        if group is not None:
            group.remove()


def kill_process_group(pgid: int, grace: float, *, job_id: str | None = None) -> None:
    """End a job: SIGTERM its process group and session, wait up to ``grace``, SIGKILL the rest.

    With ``job_id``, every process still in that job's cgroup is ended too (it also finds
    processes that left the session). Zombies count as ended.
    """
    group = limits.find_job_cgroup(job_id) if job_id else None
    end_processes(pgid, grace, group)


# -- start and supervise ---------------------------------------------------------------------


def _enforcement(group: limits.JobCgroup | None, memory_limit: int | None) -> str:
    if not memory_limit:
        return limits.NONE
    if group is not None:
        return group.enforcement
    return limits.RLIMIT if limits.has_rlimit() else limits.NONE


def _start(
    argv: list[str],
    cwd: Path,
    env: Mapping[str, str],
    stdout_path: Path,
    stderr_path: Path,
    group: limits.JobCgroup | None,
    memory_limit: int | None,
    user: JobUser | None,
) -> tuple[subprocess.Popen[bytes], limits.JobCgroup | None, str]:
    """Start the command; return it, the cgroup it runs in, and the memory enforcement."""
    try:
        proc = _popen(argv, cwd, env, stdout_path, stderr_path, group, memory_limit, user)
        return proc, group, _enforcement(group, memory_limit)
    except subprocess.SubprocessError as exc:  # joining the cgroup failed in the child
        if group is None:
            raise
        log.warning("cannot start in cgroup %s (%s); starting without", group.path, exc)
        group.remove()
    proc = _popen(argv, cwd, env, stdout_path, stderr_path, None, memory_limit, user)
    return proc, None, _enforcement(None, memory_limit)


def _popen(
    argv: list[str],
    cwd: Path,
    env: Mapping[str, str],
    stdout_path: Path,
    stderr_path: Path,
    group: limits.JobCgroup | None,
    memory_limit: int | None,
    user: JobUser | None = None,
) -> subprocess.Popen[bytes]:
    with ExitStack() as stack:
        # O_APPEND: a retried attempt or the runner's own notes are never overwritten.
        out = stack.enter_context(open(stdout_path, "ab"))
        err = stack.enter_context(open(stderr_path, "ab"))
        steps: list[Callable[[], object]] = []
        if group is not None:
            steps.append(stack.enter_context(limits.cgroup_preexec(group)))
        elif memory_limit and limits.has_rlimit():
            steps.append(limits.rlimit_preexec(memory_limit))
        if user is not None:  # last: joining the cgroup needs root
            steps.append(_drop_to(user))
        if _PRCTL is not None:  # after the uid change, which would clear it
            steps.append(_die_with_parent)
        preexec = _chain(steps) if steps else None
        return subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            preexec_fn=preexec,
            close_fds=True,
        )


def _load_prctl() -> Callable[..., int] | None:
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not Linux
        return None


_PRCTL = _load_prctl() if sys.platform.startswith("linux") else None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """The command gets SIGKILL if its supervisor dies (bwrap does the same for a box), so
    a run never goes on unsupervised; recovery ends the rest through the cgroup."""
    assert _PRCTL is not None
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _drop_to(user: JobUser) -> Callable[[], None]:
    """A ``preexec_fn`` step that becomes ``user`` (no supplementary groups) for good."""

    def drop() -> None:
        os.setgroups([])
        os.setgid(user.gid)
        os.setuid(user.uid)

    return drop


def _chain(steps: list[Callable[[], object]]) -> Callable[[], None]:
    def run_all() -> None:
        for step in steps:
            step()

    return run_all


def _supervise(
    waiter: _ExitWaiter,
    tree: _TreeSampler,
    t0: float,
    time_limit: float | None,
    should_cancel: Callable[[], bool] | None,
    cancel_event: threading.Event | None,
    sample_interval: float,
    disk_limit: tuple[Path, int] | None = None,
) -> str | None:
    """Wait for the main process; "timeout", "cancel" or "disk" if it has to be stopped."""
    deadline = t0 + time_limit if time_limit else None
    next_disk = t0 + DISK_CHECK_INTERVAL
    sample_interval = max(sample_interval, 0.01)
    watching = should_cancel is not None or cancel_event is not None
    tick = min(sample_interval, CANCEL_CHECK_INTERVAL) if watching else sample_interval
    next_sample = next_tick = t0 + tick
    next_ask = t0 + CANCEL_CHECK_INTERVAL
    while True:
        wake = min(next_tick, deadline) if deadline is not None else next_tick
        if waiter.wait(max(0.0, wake - time.monotonic())):
            return None
        now = time.monotonic()
        next_tick = now + tick
        if now >= next_sample:
            tree.sample()
            next_sample = now + sample_interval
        if deadline is not None and now >= deadline:
            return "timeout"
        if cancel_event is not None and cancel_event.is_set():
            return "cancel"
        if should_cancel is not None and now >= next_ask:
            next_ask = now + CANCEL_CHECK_INTERVAL
            if _ask(should_cancel):
                return "cancel"
        if disk_limit is not None and now >= next_disk:
            next_disk = now + DISK_CHECK_INTERVAL
            if disk_usage(disk_limit[0]) > disk_limit[1]:
                return "disk"


def disk_usage(folder: Path) -> int:
    """Bytes a folder really occupies (allocated blocks: sparse files count what they use)."""
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


def _ask(should_cancel: Callable[[], bool]) -> bool:
    try:
        return bool(should_cancel())
    except Exception as exc:  # a store hiccup must not end supervision of a running job
        log.warning("cancel check failed: %s", exc, extra={"action": "cancel_check_failed"})
        return False


def _result(
    waiter: _ExitWaiter,
    tree: _TreeSampler,
    group: limits.JobCgroup | None,
    enforcement: str,
    stop: str | None,
    started: float,
    wall: float,
) -> ExecResult:
    status, usage = waiter.result or (None, None)
    exit_code = sig = None
    if status is not None:
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
        else:
            exit_code = os.waitstatus_to_exitcode(status)
    user, system = tree.cpu(usage)
    peak = group.peak_memory() if group is not None else None
    if peak is None:
        peak = max(tree.peak_rss, _maxrss_bytes(usage))
    return ExecResult(
        exit_code=exit_code,
        signal=sig,
        timed_out=stop == "timeout",
        cancelled=stop == "cancel",
        disk_exceeded=stop == "disk",
        oom=group is not None and group.oom_kills() > 0,
        wall_seconds=wall,
        cpu_user=user,
        cpu_system=system,
        peak_memory=peak,
        peak_processes=max(tree.peak_processes, 1),
        memory_enforcement=enforcement,
        started=started,
        finished=started + wall,
    )


def _maxrss_bytes(usage: os.struct_rusage | None) -> int:
    """Largest single-process RSS in the waited-for tree (kB on Linux, bytes on macOS)."""
    if usage is None:
        return 0
    return usage.ru_maxrss if sys.platform == "darwin" else usage.ru_maxrss * 1024


# -- waiting for the main process ------------------------------------------------------------


class _ExitWaiter:
    """Waits for one child to exit and reaps it with ``wait4`` (which returns its rusage).

    A pidfd wakes us the moment the child exits, so a fast command costs no polling delay;
    where there is none (macOS, old kernels) we poll with a short back-off.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.result: tuple[int | None, os.struct_rusage | None] | None = None
        self._poll: select.poll | None = None
        self._fd: int | None = None
        try:
            self._fd = os.pidfd_open(pid)
            self._poll = select.poll()
            self._poll.register(self._fd, select.POLLIN)
        except (AttributeError, OSError):
            self._fd = None

    @property
    def returncode(self) -> int | None:
        if self.result is None or self.result[0] is None:
            return None
        return os.waitstatus_to_exitcode(self.result[0])

    def wait(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds (None: for ever); True once the child is reaped."""
        if self.result is not None or self._reap():
            return True
        if self._poll is not None:
            self._poll.poll(None if timeout is None else timeout * 1000)
            return self._reap() or (timeout is None and self.wait(None))
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.0005
        while not self._reap():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            time.sleep(delay if left is None else min(delay, left))
            delay = min(delay * 2, 0.05)
        return True

    def _reap(self) -> bool:
        try:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped behind our back (SIGCHLD ignored): status unknown
            self.result = (None, None)
            return True
        if pid == 0:
            return False
        self.result = (status, usage)
        return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._poll = None


# -- the process tree ------------------------------------------------------------------------


class _TreeSampler:
    """Samples the job's processes: RSS sum, process count, CPU times."""

    def __init__(
        self,
        root: int,
        group: limits.JobCgroup | None,
        on_sample: Callable[[int, float], None] | None = None,
    ) -> None:
        self.root, self.group, self.on_sample = root, group, on_sample
        self.peak_rss = 0
        self.peak_processes = 0
        self._procs: dict[int, psutil.Process] = {}
        self._cpu: dict[int, tuple[float, float]] = {}  # last sample while root ran
        self._leftover_cpu: dict[int, tuple[float, float]] = {}

    def sample(self) -> None:
        rss, cpu = self._measure(_members(self.root, self.group))
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_processes = max(self.peak_processes, len(cpu))
        self._cpu = cpu
        if self.on_sample is not None:
            self.on_sample(rss, sum(user + system for user, system in cpu.values()))

    def sample_leftovers(self) -> list[int]:
        """After the main process was reaped: measure and return what is still running."""
        # The root's pid is free now, so only the cgroup or the session says who is ours.
        pids = set(self.group.pids()) if self.group is not None else _session_members(self.root)
        rss, cpu = self._measure(pids)
        self.peak_rss = max(self.peak_rss, rss)
        self._leftover_cpu = cpu
        return list(cpu)

    def cpu(self, usage: os.struct_rusage | None) -> tuple[float, float]:
        """(user, system) seconds of the whole tree; see the module docstring."""
        inside = [v for pid, v in self._cpu.items() if pid not in self._leftover_cpu]
        waited = (usage.ru_utime, usage.ru_stime) if usage is not None else (0.0, 0.0)
        user = max(waited[0], sum(v[0] for v in inside))
        system = max(waited[1], sum(v[1] for v in inside))
        user += sum(v[0] for v in self._leftover_cpu.values())
        system += sum(v[1] for v in self._leftover_cpu.values())
        return user, system

    def _measure(self, pids: set[int]) -> tuple[int, dict[int, tuple[float, float]]]:
        rss = 0
        cpu: dict[int, tuple[float, float]] = {}
        for pid in pids:
            proc = self._procs.get(pid)
            try:
                if proc is None:
                    proc = self._procs[pid] = psutil.Process(pid)
                with proc.oneshot():
                    if proc.status() == psutil.STATUS_ZOMBIE:
                        continue
                    rss += proc.memory_info().rss
                    t = proc.cpu_times()
                    cpu[pid] = (t.user + t.children_user, t.system + t.children_system)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return rss, cpu


def _members(root: int, group: limits.JobCgroup | None) -> set[int]:
    """The job's processes: its cgroup, else session/group members plus the root's tree."""
    if group is not None:
        return set(group.pids())
    pids = _session_members(root)
    try:
        pids.update(child.pid for child in psutil.Process(root).children(recursive=True))
        pids.add(root)
    except psutil.NoSuchProcess:
        pass
    return pids


def _session_members(sid: int) -> set[int]:
    """Processes whose session or process group is ``sid`` (ours is never included)."""
    found = set()
    me = os.getpid()
    for pid in psutil.pids():
        if pid <= 1 or pid == me:
            continue
        try:
            if os.getsid(pid) == sid or os.getpgid(pid) == sid:
                found.add(pid)
        except OSError:
            continue
    return found


# -- ending a job ----------------------------------------------------------------------------


def end_processes(
    pgid: int, grace: float, group: limits.JobCgroup | None, *, spare: int | None = None
) -> None:
    """End a job's process tree: the one kill used by cancel, timeouts and recovery.

    SIGTERM everything of the job (its cgroup first, then its process group and session),
    wait up to ``grace``, then SIGKILL until it is gone. ``spare`` is left out of the
    SIGTERM only (the bwrap process, whose death would SIGKILL the box at once).
    """
    if grace > 0:
        _signal_job(pgid, signal.SIGTERM, group, spare)
        if _wait_gone(pgid, group, grace):
            return
    deadline = time.monotonic() + _KILL_WAIT
    while True:
        _signal_job(pgid, signal.SIGKILL, group)
        if _wait_gone(pgid, group, 0.05) or time.monotonic() > deadline:
            return


def _signal_job(
    pgid: int, sig: int, group: limits.JobCgroup | None, spare: int | None = None
) -> None:
    if group is not None:
        for pid in group.pids():
            if pid != spare and pid > 1 and pid != os.getpid():
                try:
                    os.kill(pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
        if sig == signal.SIGKILL:
            group.signal_all(sig)
    if pgid <= 1:  # no process group known (0 would be our own group!)
        return
    if spare is None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    for pid in _session_members(pgid):  # members that moved to another process group
        if pid == spare:
            continue
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _wait_gone(pgid: int, group: limits.JobCgroup | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pgid, group):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_KILL_POLL)
    return True


def _alive(pgid: int, group: limits.JobCgroup | None) -> bool:
    """Is any process of the job still running? (Zombies are dead, just not yet reaped.)"""
    if group is not None and group.pids():
        return True
    if pgid <= 1:
        return False
    for pid in _session_members(pgid):
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            continue
    return False

"""The per-job supervisor: a small process that runs ``run_job`` for one job and records
its end in the store, even if the server that started it is gone (DESIGN §9).

Supervisors are forked by a launcher process (``python -m opendps.runner.supervisor``)
that imported opendps once, so starting a job costs a fork, not a Python start-up.
The launcher reads ``<job_id> <attempt>`` lines on stdin and answers ``started <job_id> <pid>``
and ``exited <job_id> <pid> <status>`` lines on stdout. When its stdin closes (the
executor stopped or died) it exits; running supervisors carry on in their own sessions.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import sys
from pathlib import Path
from typing import TextIO

from opendps.service.context import Services
from opendps.settings import Settings


def record_self_as_supervisor(services: Services, job_id: str, attempt: int | None = None) -> bool:
    """This process supervises the job's attempt: recovery tells by its pid and start time
    whether it died mid-run (also used by run-local, which supervises its job itself).
    False when that attempt is over (recovered and claimed again meanwhile)."""
    import psutil

    me = psutil.Process()
    return services.job_store.record_supervisor(job_id, me.pid, me.create_time(), attempt=attempt)


def supervise(services: Services, job_id: str, attempt: int | None = None) -> int:
    """Body of a supervisor process: run the job's attempt ``attempt``, return an exit status.

    The attempt is the one the executor claimed: if the store says it is over (recovered
    and claimed again meanwhile), the supervisor leaves without running anything.
    """
    from opendps.runner.run import run_job

    # The launcher built ``services`` before forking but never connected: drop the
    # inherited pool state without touching the parent's (SQLAlchemy's fork recipe).
    services.db.engine.dispose(close=False)
    try:
        if not record_self_as_supervisor(services, job_id, attempt):
            return 0  # that attempt is not ours to run any more
        run_job(services, job_id, attempt=attempt)
        return 0
    finally:
        services.close()


def _child(services: Services, job_id: str, attempt: int | None, log_path: Path) -> None:
    """In the forked child: detach, point stdio away from the launcher's pipes, run."""
    os.setsid()
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    devnull = os.open(os.devnull, os.O_RDWR)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.dup2(log_fd, 2)
    os.close(devnull)
    os.close(log_fd)
    status = 1
    try:
        status = supervise(services, job_id, attempt)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(status)


def _preload() -> None:
    """Import what every supervisor needs once, before any fork."""
    import opendps.registry.build
    import opendps.registry.environment
    import opendps.runner.execute
    import opendps.runner.localize
    import opendps.runner.run
    import opendps.service.jobs
    import opendps.service.secrets
    import opendps.storage  # noqa: F401


def launcher_main() -> None:
    settings = Settings.model_validate(json.loads(os.environ["DPS_LAUNCHER_SETTINGS"]))
    _preload()
    from opendps.runner.hostinfo import host_facts

    host_facts()  # computed once here, inherited by every supervisor
    # Built once, before any fork; it must never connect here (children do).
    services = Services(settings, migrate=False)
    # Cached services, built once too (the sandbox probes bwrap and the job user).
    for name in ("secrets", "identity", "storage", "sandbox"):
        getattr(services, name)
    log_dir = settings.data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "supervisor.log"
    children: dict[int, str] = {}
    out = sys.stdout
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the server, which closes stdin
    # A child's exit wakes the select at once (instead of polling for it).
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    os.set_blocking(wake_read, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    selector.register(wake_read, selectors.EVENT_READ)
    pending = b""
    while True:
        ready = {key.fd for key, _ in selector.select(timeout=1.0)}
        if wake_read in ready:
            try:
                os.read(wake_read, 4096)
            except BlockingIOError:
                pass
        if 0 in ready:
            chunk = os.read(0, 65536)
            if not chunk:
                break  # executor gone: stop launching; running children carry on
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                words = line.decode().split()
                if not words:
                    continue
                job_id = words[0]
                attempt = int(words[1]) if len(words) > 1 and words[1].isdigit() else None
                pid = os.fork()
                if pid == 0:
                    _child(services, job_id, attempt, log_path)
                children[pid] = job_id
                out.write(f"started {job_id} {pid}\n")
            out.flush()
        _reap(children, out)


def _reap(children: dict[int, str], out: TextIO) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        job_id = children.pop(pid, "?")
        out.write(f"exited {job_id} {pid} {os.waitstatus_to_exitcode(status)}\n")
        out.flush()


if __name__ == "__main__":
    launcher_main()

"""Per-job memory limits: a cgroup where the host allows one, else ``RLIMIT_AS``.

Detection order (first that works wins, see :func:`memory_control`):

1. ``cgroup-v2``: the memory controller is delegated to our cgroup or the nearest ancestor
   (``memory`` in its ``cgroup.subtree_control``), so we may create children with ``memory.max``.
2. ``cgroup-v1``: the v1 memory hierarchy is mounted and writable (``memory.limit_in_bytes``).
3. ``rlimit``: ``RLIMIT_AS`` set in the child before it execs (address space, not RSS, so
   mmap-heavy programs can fail early; no OOM signal, the program sees ``MemoryError``/ENOMEM).
4. ``none``: nothing to enforce with (non-POSIX hosts).

Job cgroups are created *below the cgroup this process is in*
(``<own cgroup>/opendps/<job id>``; on v2 below the nearest ancestor that delegates memory),
so the limits of the server's own cgroup (a container, a systemd slice, a batch-system
allocation) keep applying to its jobs; a server in the root cgroup gets
``/sys/fs/cgroup/memory/opendps/<job id>``. Even without a
memory limit the cgroup is worth having: ``cgroup.procs`` lists every process of the job,
also double-forked or ``setsid`` ones, and the kernel records the exact peak usage.

Every cgroup operation fails soft: an absent, read-only or half-configured hierarchy makes
:func:`create_job_cgroup` return ``None`` and the caller falls back.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CGROUP_V2 = "cgroup-v2"
CGROUP_V1 = "cgroup-v1"
RLIMIT = "rlimit"
NONE = "none"

#: Folder (below our own cgroup) that holds one cgroup per running job.
JOBS_FOLDER = "opendps"


@dataclass(frozen=True)
class JobCgroup:
    """One job's cgroup: where its processes live, what they used, how to end them.

    On v1 each controller is its own hierarchy: ``path`` is the job's memory cgroup (it
    lists the processes and holds the memory accounting) and ``extra`` its pids and cpu
    cgroups, when those hierarchies are mounted and writable.
    """

    path: Path
    version: int  # 1 or 2
    extra: tuple[Path, ...] = ()

    @property
    def enforcement(self) -> str:
        return CGROUP_V2 if self.version == 2 else CGROUP_V1

    @property
    def all_paths(self) -> tuple[Path, ...]:
        return (self.path, *self.extra)

    def controllers(self) -> list[str]:
        """What this cgroup limits, e.g. ["memory", "pids", "cpu"]."""
        if self.version == 2:
            try:
                return (self.path.parent / "cgroup.subtree_control").read_text().split()
            except OSError:
                return []
        return ["memory", *(_controller_of(p) for p in self.extra)]

    def pids(self) -> list[int]:
        """Every live process of the job (zombies have already left the cgroup)."""
        try:
            text = (self.path / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(line) for line in text.split()]

    def peak_memory(self) -> int | None:
        """Highest memory charge (RSS + page cache) since creation; None if unknown."""
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        try:
            return int((self.path / name).read_text())
        except (OSError, ValueError):
            return None  # v2 before Linux 5.19 has no memory.peak

    def oom_kills(self) -> int:
        """How many of the job's processes the kernel OOM killer has killed."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            lines = (self.path / name).read_text().splitlines()
        except OSError:
            return 0
        for line in lines:
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def signal_all(self, sig: int) -> int:
        """Send ``sig`` to every process in the cgroup once; return how many were signalled."""
        if sig == signal.SIGKILL and self.version == 2 and _write(self.path / "cgroup.kill", "1"):
            return len(self.pids())
        count = 0
        for pid in self.pids():
            if pid > 1 and pid != os.getpid():
                try:
                    os.kill(pid, sig)
                    count += 1
                except ProcessLookupError:
                    pass
        return count

    def kill_all(self, timeout: float = 2.0) -> bool:
        """SIGKILL until the cgroup is empty (new forks are caught by the next pass)."""
        deadline = time.monotonic() + timeout
        while self.pids():
            self.signal_all(signal.SIGKILL)
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def remove(self) -> None:
        """Remove the cgroup (killing stragglers first) and the jobs folder if now empty."""
        if self.path.exists():
            self.kill_all()
        for path in self.all_paths:
            _remove_dir(path)


def _remove_dir(path: Path) -> None:
    if not path.exists():
        return
    for _ in range(50):
        try:
            path.rmdir()
            break
        except FileNotFoundError:
            break
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                log.warning("cannot remove cgroup %s: %s", path, exc)
                return
            time.sleep(0.01)  # the last task is still exiting
    try:
        path.parent.rmdir()  # fails while other jobs run: that is fine
    except OSError:
        pass


def memory_control() -> str:
    """What this host lets us use to cap a job's memory (cached per process)."""
    base = _cgroup_base()
    if base is not None:
        return CGROUP_V2 if base[0] == 2 else CGROUP_V1
    return RLIMIT if has_rlimit() else NONE


def create_job_cgroup(
    name: str,
    memory_limit: int | None = None,
    *,
    cpus: float | None = None,
    max_processes: int | None = None,
) -> JobCgroup | None:
    """Create a fresh cgroup for one job, with its limits; None if we cannot.

    ``memory_limit`` bytes, ``cpus`` (a CPU quota: 1.5 = one and a half CPUs) and
    ``max_processes`` (the kernel refuses more forks). The memory cgroup is required; pids
    and cpu are applied where the host lets us (v1: their hierarchies are writable).

    A leftover cgroup of the same name (an earlier attempt of the job whose supervisor died)
    is emptied and replaced: two copies of one job must never run at once.
    """
    base = _cgroup_base()
    if base is None:
        return None
    version, folder = base
    safe = _safe_name(name)
    extra = tuple(f / safe for f in _v1_extra_folders()) if version == 1 else ()
    group = JobCgroup(folder / safe, version, extra)
    try:
        _replace_dir(group)
        if memory_limit:
            limit_file = "memory.max" if version == 2 else "memory.limit_in_bytes"
            (group.path / limit_file).write_text(str(int(memory_limit)))
        _apply_cpu_and_pids(group, cpus, max_processes)
    except OSError as exc:
        log.warning("no cgroup for job %s (%s); falling back", name, exc)
        group.remove()
        return None
    return group


def find_job_cgroup(name: str) -> JobCgroup | None:
    """The cgroup of a job started by this server (same parent cgroup), if it still exists."""
    base = _cgroup_base()
    if base is None:
        return None
    safe = _safe_name(name)
    extra = tuple(f / safe for f in _v1_extra_folders()) if base[0] == 1 else ()
    group = JobCgroup(base[1] / safe, base[0], tuple(p for p in extra if p.is_dir()))
    return group if group.path.is_dir() else None


#: An empty job cgroup older than this is a leftover (a supervisor killed before it could
#: remove it): job cgroups get their first process milliseconds after they are made.
STALE_CGROUP_SECONDS = 600.0


def remove_stale_job_cgroups() -> int:
    """Remove empty job cgroups left behind (oldest first); answers how many."""
    base = _cgroup_base()
    if base is None:
        return 0
    folders = [base[1], *(_v1_extra_folders() if base[0] == 1 else ())]
    removed = 0
    now = time.time()
    for folder in folders:
        try:
            children = [c for c in folder.iterdir() if c.is_dir()]
        except OSError:
            continue
        for child in children:
            group = JobCgroup(child, base[0])
            try:
                old = now - child.stat().st_mtime > STALE_CGROUP_SECONDS
                if old and not group.pids():
                    child.rmdir()
                    removed += 1
            except OSError:
                continue
    return removed


def describe_limits() -> str:
    """How this host limits jobs, for the start-up log: e.g. "cgroup-v1 (memory, pids, cpu)"."""
    base = _cgroup_base()
    if base is None:
        return memory_control()
    if base[0] == 1:
        _v1_extra_folders()  # probes once, and records which controllers it found
        names = ["memory", *_V1_EXTRA_NAMES.get("found", [])]
        return f"{CGROUP_V1} ({', '.join(names)})"
    return f"{CGROUP_V2} (memory, pids and cpu where delegated)"


def cgroup_from_paths(paths: list[str]) -> JobCgroup | None:
    """A job cgroup recorded in the store (recovery), if it still exists."""
    existing = [Path(p) for p in paths if p]
    if not existing or not existing[0].is_dir():
        return None
    version = 2 if (existing[0] / "memory.max").exists() else 1
    return JobCgroup(existing[0], version, tuple(p for p in existing[1:] if p.is_dir()))


_CPU_PERIOD = 100_000  # microseconds


def _controller_of(path: Path) -> str:
    """Which v1 hierarchy a job folder belongs to ("pids" or "cpu"), by its files."""
    if (path / "pids.max").exists():
        return "pids"
    return "cpu" if (path / "cpu.cfs_quota_us").exists() else "?"


def _apply_cpu_and_pids(group: JobCgroup, cpus: float | None, max_processes: int | None) -> None:
    quota = int(cpus * _CPU_PERIOD) if cpus else None
    if group.version == 2:
        if max_processes:
            _write(group.path / "pids.max", str(int(max_processes)))
        if quota:
            _write(group.path / "cpu.max", f"{quota} {_CPU_PERIOD}")
        return
    for path in group.extra:
        controller = _controller_of(path)
        if controller == "pids" and max_processes:
            (path / "pids.max").write_text(str(int(max_processes)))
        elif controller == "cpu" and quota:
            (path / "cpu.cfs_period_us").write_text(str(_CPU_PERIOD))
            (path / "cpu.cfs_quota_us").write_text(str(quota))


def rlimit_preexec(memory_limit: int) -> Callable[[], None]:
    """A ``preexec_fn`` that caps the child's address space at ``memory_limit`` bytes."""
    import resource

    def apply() -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        soft = memory_limit if hard == resource.RLIM_INFINITY else min(memory_limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))

    return apply


@contextmanager
def cgroup_preexec(group: JobCgroup) -> Iterator[Callable[[], None]]:
    """A ``preexec_fn`` that moves the child into ``group`` before it execs the command.

    The files are opened here, in the parent, so that the child makes one ``write`` per
    hierarchy between fork and exec (no imports or locks that could deadlock); "0" means
    "myself". They are opened as root, so a child that drops to the job user afterwards
    has already joined.
    """
    fds = [os.open(path / "cgroup.procs", os.O_WRONLY) for path in group.all_paths]
    try:
        yield lambda: [_write_fd(fd, b"0") for fd in fds] and None
    finally:
        for fd in fds:
            os.close(fd)


def _write_fd(fd: int, data: bytes) -> None:
    os.write(fd, data)


# -- detection ---------------------------------------------------------------------------


@functools.cache
def _cgroup_base() -> tuple[int, Path] | None:
    """(version, folder for job cgroups) for the first usable hierarchy, or None."""
    for version, finder in ((2, _v2_own_cgroup), (1, _v1_own_cgroup)):
        own = finder()
        if own is None:
            continue
        folder = own / JOBS_FOLDER
        if _probe(version, folder):
            return version, folder
    return None


_V1_EXTRA_NAMES: dict[str, list[str]] = {}


@functools.cache
def _v1_extra_folders() -> tuple[Path, ...]:
    """Job folders in the v1 pids and cpu hierarchies that we may write (else skipped)."""
    found = []
    for controller in ("pids", "cpu"):
        mount = _mount_point("cgroup", controller)
        path = _own_cgroup_path(lambda ctrls, c=controller: c in ctrls.split(","))
        if mount is None or path is None:
            continue
        folder = _join(mount, path) / JOBS_FOLDER
        probe = folder / f"probe-{os.getpid()}"
        try:
            folder.mkdir(exist_ok=True)
            probe.mkdir()
            found.append(folder)
            _V1_EXTRA_NAMES.setdefault("found", []).append(controller)
        except OSError:
            continue
        finally:
            for leftover in (probe, folder):
                try:
                    leftover.rmdir()
                except OSError:
                    pass
    return tuple(found)


def _v2_own_cgroup() -> Path | None:
    """The nearest cgroup, from ours upwards, that may give its children a memory.max.

    v2 forbids processes in a cgroup that distributes memory to children, so a delegated
    setup has us in a leaf below the delegated cgroup (or in the root cgroup).
    """
    mount = _mount_point("cgroup2", None)
    path = _own_cgroup_path(lambda controllers: controllers == "", hierarchy_id="0")
    if mount is None or path is None:
        return None
    own = _join(mount, path)
    for folder in (own, *own.parents):
        try:
            if "memory" in (folder / "cgroup.subtree_control").read_text().split():
                return folder
        except OSError:
            return None  # left the cgroup mount
        if folder == mount[0]:
            break
    return None


def _v1_own_cgroup() -> Path | None:
    mount = _mount_point("cgroup", "memory")
    path = _own_cgroup_path(lambda ctrls: "memory" in ctrls.split(","))
    if mount is None or path is None:
        return None
    own = _join(mount, path)
    return own if (own / "memory.limit_in_bytes").exists() else None


def _probe(version: int, folder: Path) -> bool:
    """Can we create (and remove) a job cgroup with a memory limit in ``folder``?"""
    group = JobCgroup(folder / f"probe-{os.getpid()}", version)
    try:
        _make_dirs(group)
        limit_file = "memory.max" if version == 2 else "memory.limit_in_bytes"
        return (group.path / limit_file).exists()
    except OSError:
        return False
    finally:
        for leftover in (group.path, folder):  # the folder stays only while jobs use it
            try:
                leftover.rmdir()
            except OSError:
                pass


def _own_cgroup_path(match: Callable[[str], bool], hierarchy_id: str | None = None) -> str | None:
    """Our path in the hierarchy whose controller list ``match``es, from /proc/self/cgroup."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        hid, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if (hierarchy_id is None or hid == hierarchy_id) and match(controllers):
            return path
    return None


def _mount_point(fstype: str, option: str | None) -> tuple[Path, str] | None:
    """(mount point, mounted root) of a cgroup filesystem, from /proc/self/mountinfo."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        sep = fields.index("-")
        if fields[sep + 1] != fstype:
            continue
        if option is None or option in fields[sep + 3].split(","):
            return Path(fields[4]), fields[3]
    return None


def _join(mount: tuple[Path, str], path: str) -> Path:
    """Map a /proc/self/cgroup path onto the mount (which may expose only a subtree)."""
    point, root = mount
    if root != "/" and (path == root or path.startswith(root + "/")):
        path = path[len(root) :]
    return point / path.lstrip("/")


def has_rlimit() -> bool:
    """Can this platform cap a child's address space (RLIMIT_AS)?"""
    try:
        import resource
    except ImportError:
        return False
    return hasattr(resource, "RLIMIT_AS")


# -- creation ----------------------------------------------------------------------------


def _replace_dir(group: JobCgroup) -> None:
    if group.path.exists():
        log.warning("cgroup %s exists; ending its processes", group.path)
        group.kill_all()
    for path in group.all_paths:
        if path.exists():
            path.rmdir()
    _make_dirs(group)


def _make_dirs(group: JobCgroup) -> None:
    for path in group.all_paths:
        _make_dir(path, group.version)


def _make_dir(path: Path, version: int) -> None:
    # Another job may remove the (empty) jobs folder between our two mkdirs: retry.
    for attempt in range(3):
        try:
            path.parent.mkdir(exist_ok=True)
            if version == 2:
                _write(path.parent / "cgroup.subtree_control", "+memory", strict=True)
                for controller in ("+pids", "+cpu"):  # where delegated; memory is required
                    _write(path.parent / "cgroup.subtree_control", controller)
            path.mkdir()
            return
        except FileNotFoundError:
            if attempt == 2:
                raise


def _write(path: Path, text: str, *, strict: bool = False) -> bool:
    try:
        path.write_text(text)
        return True
    except OSError:
        if strict:
            raise
        return False


def _safe_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).lstrip(".")
    return cleaned or "job"

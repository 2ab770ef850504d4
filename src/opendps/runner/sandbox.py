"""The job's box (DESIGN §12): the one place where a run or build command's argv and
environment are built.

:func:`box_launch` turns "run this argv with this environment in this work dir" into a
:class:`Launch`: the argv to start (wrapped in ``bwrap`` when isolation is ``bwrap``), the
clean environment, and the user the command runs as. A container launcher (podman) slots in
here as another isolation level: it gets the same :class:`Box` and answers a Launch.

``bwrap`` box, in mount order:

- ``/`` read-only; a fresh ``/dev``, ``/proc`` (own PID namespace: only the job's
  processes), a private ``/tmp`` and ``/dev/shm``;
- the hidden folders (the data dir, the server's home, local storage) covered by empty
  tmpfs mounts, so the database, ``secret.key``, other jobs' work dirs, other builds and the
  download cache do not exist inside;
- the work dir bound read-write at its host path, the algorithm's build read-only, and the
  interpreter folders that live under a hidden folder (a pyenv build in root's 0700 home)
  read-only, so the algorithm's virtualenv and ``python3`` on PATH keep working.

When the server runs as root, bwrap itself runs as root (it can reach every folder it
binds) and drops to the job user with ``setpriv`` as the last step, with no capabilities
left: the job cannot signal the server or other jobs, nor write any ``cgroup.procs``.
Without root, bwrap makes a user namespace and the job keeps the server's uid; the PID
namespace still keeps it from signalling anything outside, and the tmpfs mounts from
reading the data dir.

``process`` isolation starts the command directly, as the job user when the server is
root (dropped in the child before exec). It has no mount or PID namespace: see
docs/security.md for what it lacks.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from opendps.errors import ConfigError

if TYPE_CHECKING:
    from opendps.settings import Settings

log = logging.getLogger(__name__)

BWRAP = "bwrap"
PROCESS = "process"
_SETPRIV = "setpriv"


class IsolationError(ConfigError):
    """The isolation this server was configured with is not available here."""


@dataclass(frozen=True)
class JobUser:
    """The unprivileged account jobs and builds run as (when the server runs as root)."""

    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class Box:
    """What one command may reach, besides the host's system files (read-only)."""

    writable: Path  # the work dir (a build: its build folder), bound at its host path
    read_only: tuple[Path, ...] = ()  # e.g. the algorithm's build
    hidden: tuple[Path, ...] = ()  # replaced by empty folders (data dir, the server's home)
    network: bool = True


@dataclass(frozen=True)
class Launch:
    """How to start one command: exactly this argv, env and cwd, as ``user``."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    isolation: str  # "bwrap" | "process"
    # process isolation: the child drops to this user before exec (bwrap: done in argv).
    user: JobUser | None = None
    notes: list[str] = field(default_factory=list)


# -- what is available -----------------------------------------------------------------------


@functools.cache
def bwrap_available() -> bool:
    """Is bwrap installed and able to make a box here (namespaces allowed)?"""
    path = shutil.which(BWRAP)
    if path is None:
        return False
    probe = [path, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    probe += ["--unshare-pid", "--die-with-parent", *_userns_flags(), "true"]
    try:
        done = subprocess.run(probe, capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    if done.returncode != 0:
        log.warning("bwrap is installed but cannot make a box: %s", done.stderr.decode().strip())
    return done.returncode == 0


def resolve_isolation(setting: str) -> str:
    """``auto`` -> bwrap when it works here, else process; ``bwrap`` must work."""
    if setting == PROCESS:
        return PROCESS
    if bwrap_available():
        return BWRAP
    if setting == BWRAP:
        raise IsolationError(
            "isolation: bwrap was asked for, but bwrap is not installed or cannot create "
            "namespaces here (install the bubblewrap package, or set isolation: process)"
        )
    return PROCESS


def job_user(name: str) -> JobUser | None:
    """The job user when this process is root (created when missing), else None."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        _create_user(name)
        entry = pwd.getpwnam(name)
    if entry.pw_uid == 0:
        raise IsolationError(f"job_user {name!r} is root; jobs must run as an unprivileged user")
    return JobUser(name, entry.pw_uid, entry.pw_gid)


def _create_user(name: str) -> None:
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    argv = [useradd, "--system", "--user-group", "--no-create-home"]
    argv += ["--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode not in (0, 9):  # 9: it exists (another server created it just now)
        raise IsolationError(f"cannot create the job user {name!r}: {done.stderr.strip()}")
    log.info("created the job user %s", name, extra={"action": "job_user_created"})


# -- the environment -------------------------------------------------------------------------


def host_environment(allowlist: Iterable[str], source: Mapping[str, str] | None = None) -> dict:
    """The host variables a job may see: those named in ``allowlist`` ("LC_*" = prefix).

    Never ``DPS_*`` settings, whatever the allowlist says (they hold the server's
    credentials); storage and database credentials are not listed by default.
    """
    source = os.environ if source is None else source
    patterns = list(allowlist)
    return {
        name: value
        for name, value in source.items()
        if not name.startswith("DPS_") and any(fnmatch.fnmatchcase(name, p) for p in patterns)
    }


# -- the launch ------------------------------------------------------------------------------


def box_launch(
    isolation: str,
    box: Box,
    argv: list[str],
    env: Mapping[str, str],
    *,
    user: JobUser | None,
    cwd: Path | None = None,
) -> Launch:
    """The :class:`Launch` that runs ``argv`` in ``box`` (see the module docstring)."""
    cwd = Path(cwd or box.writable)
    if isolation == PROCESS:
        return Launch(list(argv), dict(env), cwd, PROCESS, user)
    if isolation != BWRAP:
        raise IsolationError(f"unknown isolation {isolation!r}")
    wrapped = [shutil.which(BWRAP) or BWRAP, *bwrap_arguments(box, env)]
    wrapped += ["--chdir", str(cwd), "--"]
    if user is not None:
        wrapped += [
            shutil.which(_SETPRIV) or _SETPRIV,
            f"--reuid={user.uid}",
            f"--regid={user.gid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
        ]
    return Launch([*wrapped, *argv], dict(env), cwd, BWRAP, None)


def bwrap_arguments(box: Box, env: Mapping[str, str]) -> list[str]:
    """bwrap's options for ``box`` (namespaces, then mounts in an order that works)."""
    args = ["--die-with-parent", "--new-session"]
    args += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    args += _userns_flags()
    if not box.network:
        args.append("--unshare-net")
    args += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    # bwrap cannot make a mount point on the read-only root: absent folders hide nothing.
    hidden = _outermost([Path("/tmp"), *(_real(p) for p in box.hidden if p.exists())])
    for folder in sorted(hidden, key=lambda p: len(p.parts)):
        mode = "1777" if folder == Path("/tmp") else "0711"
        args += ["--perms", mode, "--tmpfs", str(folder)]
    args += ["--perms", "1777", "--tmpfs", "/dev/shm"]
    binds: list[tuple[str, Path]] = [("--bind", _real(box.writable))]
    binds += [("--ro-bind", _real(p)) for p in box.read_only]
    exposed = {_real(p) for p in interpreter_folders(env)}
    binds += [("--ro-bind", p) for p in sorted(exposed) if _under_any(p, hidden)]
    made: set[Path] = set()
    for kind, path in sorted(binds, key=lambda b: len(b[1].parts)):
        if not path.exists():
            continue
        args += _parent_dirs(path, hidden, made)
        args += [kind, str(path), str(path)]
    return args


def interpreter_folders(env: Mapping[str, str]) -> list[Path]:
    """Folders a job needs to run Python and the tools on its PATH.

    The server's interpreter (its installation and virtualenv), the folder opendps is
    imported from (built-in processes run ``python -m opendps.builtins…``), every PATH
    entry, and the root of a pyenv whose shims are on PATH (the shims run pyenv itself).
    """
    import opendps

    found = [Path(sys.base_prefix), Path(sys.prefix), Path(opendps.__file__).parent.parent]
    for entry in env.get("PATH", "").split(os.pathsep):
        if not entry:
            continue
        path = Path(entry)
        found.append(path)
        if path.name == "shims":
            found.append(path.parent)
    return found


def _userns_flags() -> list[str]:
    # Without root, bwrap needs a user namespace for its mounts; nested ones are refused.
    return [] if os.geteuid() == 0 else ["--unshare-user", "--disable-userns"]


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _outermost(paths: list[Path]) -> list[Path]:
    """Drop the paths that lie inside another one of the list."""
    unique = sorted(set(paths), key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in unique:
        if not any(path.is_relative_to(k) for k in kept):
            kept.append(path)
    return kept


def _under_any(path: Path, roots: list[Path]) -> bool:
    return any(path.is_relative_to(r) and path != r for r in roots)


def _parent_dirs(path: Path, hidden: list[Path], made: set[Path]) -> list[str]:
    """``--dir`` for each folder between a hidden tmpfs and ``path``, traversable (0711)."""
    root = next((h for h in hidden if path.is_relative_to(h) and path != h), None)
    if root is None:
        return []
    args: list[str] = []
    for parent in reversed(path.parents):
        if parent.is_relative_to(root) and parent != root and parent not in made:
            made.add(parent)
            args += ["--perms", "0711", "--dir", str(parent)]
    return args


# -- one server's box, built once from its settings ------------------------------------------


@dataclass(frozen=True)
class Sandbox:
    """How this server boxes every job and build: decided once at start."""

    isolation: str  # "bwrap" | "process"
    user: JobUser | None  # None: commands keep the server's uid (it is not root)
    hidden: tuple[Path, ...]  # never visible inside a bwrap box
    allowlist: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> Sandbox:
        return cls(
            isolation=resolve_isolation(settings.isolation),
            user=job_user(settings.job_user),
            hidden=tuple(_hidden_folders(settings)),
            allowlist=tuple(settings.job_env_allowlist),
        )

    def box(self, writable: Path, read_only: Iterable[Path] = (), *, network: bool = True) -> Box:
        return Box(Path(writable), tuple(Path(p) for p in read_only), self.hidden, network)

    def launch(
        self, box: Box, argv: list[str], env: Mapping[str, str], *, cwd: Path | None = None
    ) -> Launch:
        return box_launch(self.isolation, box, argv, env, user=self.user, cwd=cwd)

    def base_environment(self) -> dict[str, str]:
        return host_environment(self.allowlist)

    def facts(self) -> dict[str, str | None]:
        """What a job's metrics record about its box."""
        return {"isolation": self.isolation, "job_user": self.user.name if self.user else None}

    def unreachable(self, paths: Iterable[Path]) -> list[Path]:
        """Of ``paths``, those a process-isolated job user cannot reach: a folder on the way
        is closed to others (e.g. root's 0700 home holding a pyenv interpreter)."""
        if self.user is None or self.isolation != PROCESS:
            return []
        closed = []
        for path in paths:
            for folder in [*reversed(Path(path).parents), Path(path)]:
                try:
                    if folder.is_dir() and not folder.stat().st_mode & 0o001:
                        closed.append(Path(path))
                        break
                except OSError:
                    break
        return closed

    def secure_data_dir(self, settings: Settings) -> None:
        """Keep the data dir unreadable to the job user: only the work-dir and build trees
        may be traversed (process isolation needs that); the database, ``secret.key``,
        storage, cache and logs are the server's alone."""
        if self.user is None:
            return
        data = settings.data_dir
        data.mkdir(parents=True, exist_ok=True)
        for folder in (settings.jobs_dir, settings.builds_dir):
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o711)
        data.chmod(0o711)
        for private in (settings.cache_dir, data / "storage", data / "logs"):
            private.mkdir(mode=0o700, exist_ok=True)  # before anything creates them 0755
        passable = {settings.jobs_dir.name, settings.builds_dir.name}
        for entry in data.iterdir():
            if entry.name in passable or entry.is_symlink():
                continue
            try:
                entry.chmod(0o700 if entry.is_dir() else 0o600)
            except OSError as exc:
                log.warning("cannot protect %s: %s", entry, exc)


def _hidden_folders(settings: Settings) -> list[Path]:
    """The data dir, the server's home (credentials, its interpreter is re-exposed), and a
    local storage folder or SQLite database that lives elsewhere."""
    found = [settings.data_dir]
    try:
        found.append(Path(pwd.getpwuid(os.geteuid()).pw_dir))
    except KeyError:
        pass
    found.append(Path.home())
    storage = settings.storage_url or ""
    if storage and "://" not in storage:
        found.append(Path(storage))
    elif storage.startswith("file://"):
        found.append(Path(storage[len("file://") :]))
    url = settings.database_url or ""
    if url.startswith("sqlite:///"):
        found.append(Path(url[len("sqlite:///") :]).parent)
    system = {Path(p) for p in ("/", "/usr", "/bin", "/lib", "/etc", "/nonexistent")}
    return [p.absolute() for p in found if str(p) and p.absolute() not in system]

"""The cgroup around a job's container (cgroup v1 hosts): podman's ``--cgroup-parent``.

It is created by us, outlives the container, and carries the memory limit, so the kernel
charges the container's peak memory, CPU time and OOM kills where we can still read them
after the container is gone. Podman's cgroupfs manager creates the same path in every
other hierarchy; :func:`remove_group` removes those too.
"""

from __future__ import annotations

import os
from pathlib import Path

from opendps.runner import limits

CPU_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def is_v1() -> bool:
    return limits.memory_control() == limits.CGROUP_V1


def _memory_mount() -> Path | None:
    mount = limits._mount_point("cgroup", "memory")
    return mount[0] if mount else None


def parent_path(group: limits.JobCgroup) -> str:
    """The cgroup as podman's cgroupfs manager names it: a path below each hierarchy."""
    mount = _memory_mount()
    assert mount is not None
    return "/" + group.path.relative_to(mount).as_posix()


def _controller_dir(group: limits.JobCgroup | None, controller: str) -> Path | None:
    mount = _memory_mount()
    if group is None or mount is None:
        return None
    return mount.parent / controller / group.path.relative_to(mount)


def failcnt(group: limits.JobCgroup) -> int:
    """How often the cgroup's usage hit its memory limit."""
    try:
        return int((group.path / "memory.failcnt").read_text())
    except (OSError, ValueError):
        return 0


def pids_current(group: limits.JobCgroup | None) -> int:
    folder = _controller_dir(group, "pids")
    try:
        return int((folder / "pids.current").read_text()) if folder else 0
    except (OSError, ValueError):
        return 0


def cpu_seconds(group: limits.JobCgroup | None) -> tuple[float, float]:
    folder = _controller_dir(group, "cpuacct")
    try:
        text = (folder / "cpuacct.stat").read_text() if folder else ""
    except OSError:
        return 0.0, 0.0
    ticks = dict(line.split() for line in text.splitlines() if len(line.split()) == 2)
    return int(ticks.get("user", 0)) / CPU_TICKS, int(ticks.get("system", 0)) / CPU_TICKS


def remove_group(group: limits.JobCgroup) -> None:
    """Remove our cgroup and the folders podman made for it in the other hierarchies."""
    mount = _memory_mount()
    if mount is not None:
        relative = group.path.relative_to(mount)
        for hierarchy in mount.parent.iterdir():
            folder = hierarchy / relative
            if hierarchy != mount and folder.is_dir():
                for child in sorted(folder.rglob("*"), key=lambda p: -len(p.parts)):
                    if child.is_dir():
                        _rmdir(child)
                _rmdir(folder)
                _rmdir(folder.parent)  # the jobs folder, once no other job uses it
        for child in sorted(group.path.rglob("*"), key=lambda p: -len(p.parts)):
            if child.is_dir():
                _rmdir(child)
    group.remove()


def _rmdir(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass

"""``disk_space`` before a job starts (DESIGN §12): make room, or say what is missing.

Room is made by removing, oldest first, download cache entries no job is using (a cache
entry's lock is free) and the work dirs of jobs that have ended (failed jobs' work dirs are
kept for debugging until room is needed).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opendps.errors import NoSuchJob
from opendps.settings import format_size

if TYPE_CHECKING:
    from opendps.service.context import Services

log = logging.getLogger(__name__)


class DiskShortage(Exception):
    """Not enough free disk space for a job, even after cleaning up."""


def ensure_free_space(services: Services, where: Path, needed: int) -> dict[str, Any]:
    """Free ``needed`` bytes on the file system of ``where``; answers what was done."""
    free = shutil.disk_usage(where).free
    report: dict[str, Any] = {"needed_bytes": needed, "free_bytes": free, "removed": 0}
    if free >= needed:
        return report
    for path in _candidates(services, exclude=where):
        _remove(path)
        report["removed"] += 1
        free = shutil.disk_usage(where).free
        if free >= needed:
            report["free_bytes"] = free
            log.info("made room for a job: removed %d old entries", report["removed"])
            return report
    raise DiskShortage(
        f"the algorithm needs {format_size(needed)} of disk space (disk_space), but only "
        f"{format_size(free)} is free: {format_size(needed - free)} missing"
    )


def _candidates(services: Services, exclude: Path) -> list[Path]:
    """Idle cache entries and ended jobs' work dirs, oldest first."""
    settings = services.settings
    found: list[tuple[float, Path]] = []
    if settings.cache_dir.is_dir():
        for entry in settings.cache_dir.iterdir():
            if entry.is_dir() and _idle(entry):
                found.append((entry.stat().st_mtime, entry))
    if settings.jobs_dir.is_dir():
        for entry in settings.jobs_dir.iterdir():
            if entry == exclude or not entry.is_dir():
                continue
            try:
                if not services.job_store.get_job(entry.name).status.terminal:
                    continue
            except NoSuchJob:
                pass  # a leftover of a deleted job
            found.append((entry.stat().st_mtime, entry))
    return [path for _, path in sorted(found)]


def _idle(entry: Path) -> bool:
    """No job holds the cache entry's lock (runner/localize.py) right now."""
    lock = entry / ".lock"
    if not lock.exists():
        return True
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
    return True


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():
        os.unlink(path)

"""A job's work dir (DESIGN §4): input/, output/, _job.json, _context.json, logs.

When jobs run as the job user, the work dir is theirs only while the run command runs
(:func:`hand_over`); afterwards :func:`take_back` gives everything back to the server
and removes what a job could use to make the server read or write elsewhere (links
that leave the work dir, FIFOs, devices, setuid bits) before anything is staged.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opendps.models import Job

log = logging.getLogger(__name__)
MASK = "********"
#: Secret values shorter than this are masked only where they stand alone as a token
#: ("abc" in "x abc y" but not in "abcdef"), so short values do not shred every log.
SHORT_SECRET = 6


@dataclass(frozen=True)
class WorkDir:
    root: Path

    @property
    def input(self) -> Path:
        return self.root / "input"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def stdout(self) -> Path:
        return self.root / "_stdout.txt"

    @property
    def stderr(self) -> Path:
        return self.root / "_stderr.txt"

    def size(self) -> int:
        total = 0
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                try:
                    total += os.lstat(os.path.join(dirpath, name)).st_size
                except OSError:
                    pass
        return total

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def job_document(job: Job) -> dict[str, Any]:
    """_job.json: the job record, with the HySDS shape maap-py reads inside a job."""
    return {
        "job_id": job.id,
        "id": job.id,
        "algorithm": job.algorithm,
        "version": job.version,
        "algo_id": job.algorithm,
        "user": job.owner,
        "username": job.owner,
        "queue": job.queue,
        "priority": job.priority,
        "tag": job.tag,
        "tags": job.tags,
        "inputs": job.inputs,
        "params": job.inputs,
        "created": job.created.isoformat(),
        "job_info": {"job_payload": {"payload_task_id": job.id}, "job_queue": job.queue},
    }


def prepare_workdir(root: Path, job: Job) -> WorkDir:
    """A fresh work dir. A retried attempt starts clean (partial downloads are not trusted)."""
    work = WorkDir(root)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, mode=0o700)
    for folder in (work.input, work.output, work.home):
        folder.mkdir()
    (root / "_job.json").write_text(json.dumps(job_document(job), indent=2, default=str))
    (root / "_context.json").write_text(json.dumps(job.inputs, indent=2, default=str))
    work.stdout.touch()
    work.stderr.touch()
    return work


def mask_text(text: str, values: list[str]) -> str:
    """``text`` with every secret value replaced by ``********`` (short ones as tokens)."""
    values = sorted({v for v in values if v}, key=len, reverse=True)
    for value in values:
        if len(value) >= SHORT_SECRET:
            text = text.replace(value, MASK)
        else:
            pattern = r"(?<![A-Za-z0-9_])" + re.escape(value) + r"(?![A-Za-z0-9_])"
            text = re.sub(pattern, MASK, text)
    return text


def mask_secrets(path: Path, values: list[str]) -> None:
    """Replace secret values in a log file (jobs may print them; stored logs must not)."""
    if not values or not _regular_file(path):
        return
    data = path.read_bytes().decode(errors="surrogateescape")
    masked = mask_text(data, values)
    if masked != data:
        path.write_bytes(masked.encode(errors="surrogateescape"))


def _regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def hand_over(root: Path, uid: int, gid: int) -> None:
    """Give the work dir (everything in it) to the job user, for the run."""
    for path in _walk(root):
        os.chown(path, uid, gid, follow_symlinks=False)


def take_back(
    root: Path, *, keep_links: bool = False, files: tuple[str, ...] = ("_stdout.txt", "_stderr.txt")
) -> list[str]:
    """Give the work dir back to the server and defuse it; answers what was removed.

    Removed: symbolic links that lead outside the work dir (unless ``keep_links``: a
    build's virtualenv links to its interpreter), anything that is not a regular file,
    folder or link (FIFOs would block staging, devices are never wanted), and ``files``
    (relative paths the server reads later, such as logs) that are not regular files.
    Set-user/group-id bits are cleared. Runs as root on what a job left behind, so it never
    follows a link.
    """
    removed: list[str] = []
    real_root = Path(os.path.realpath(root))
    for path in _walk(root):
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        rel = os.path.relpath(path, root)
        if rel in files and not stat.S_ISREG(mode):
            _remove_entry(path, mode)
            removed.append(f"{rel} (it must be a regular file)")
            continue
        if stat.S_ISLNK(mode):
            target = Path(os.path.realpath(path))
            if not keep_links and not target.is_relative_to(real_root):
                os.unlink(path)
                removed.append(f"{rel} (a link outside the work dir)")
                continue
        elif not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            os.unlink(path)
            removed.append(f"{rel} (not a regular file)")
            continue
        os.chown(path, 0, 0, follow_symlinks=False)
        if not stat.S_ISLNK(mode) and mode & (stat.S_ISUID | stat.S_ISGID):
            os.chmod(path, stat.S_IMODE(mode) & ~(stat.S_ISUID | stat.S_ISGID))
    if removed:
        log.warning("work dir %s: removed %s", root, ", ".join(removed))
    return removed


def _remove_entry(path: str, mode: int) -> None:
    if stat.S_ISDIR(mode):
        shutil.rmtree(path, ignore_errors=True)
    else:
        os.unlink(path)


def _walk(root: Path) -> list[str]:
    """Every path below ``root`` (root first), never following links."""
    found = [str(root)]
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        found += [os.path.join(dirpath, n) for n in dirnames + filenames]
    return found

"""A job's work dir (DESIGN §4): input/, output/, _job.json, _context.json, logs."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opendps.models import Job


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
    for folder in (work.input, work.output, work.home):
        folder.mkdir(parents=True)
    (root / "_job.json").write_text(json.dumps(job_document(job), indent=2, default=str))
    (root / "_context.json").write_text(json.dumps(job.inputs, indent=2, default=str))
    work.stdout.touch()
    work.stderr.touch()
    return work


def mask_secrets(path: Path, values: list[str]) -> None:
    """Replace secret values in a log file (jobs may print them; stored logs must not)."""
    values = sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)
    if not values or not path.exists():
        return
    data = path.read_bytes()
    masked = data
    for value in values:
        masked = masked.replace(value.encode(), b"********")
    if masked != data:
        path.write_bytes(masked)

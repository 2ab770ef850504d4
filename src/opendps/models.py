"""Domain records shared by every layer: frozen dataclasses and enums."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    ACCEPTED = "accepted"
    RUNNING = "running"
    SUCCESSFUL = "successful"
    FAILED = "failed"
    DISMISSED = "dismissed"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.SUCCESSFUL, JobStatus.FAILED, JobStatus.DISMISSED})


class Reason(StrEnum):
    EXIT_CODE = "exit_code"
    TIMEOUT = "timeout"
    OOM = "oom"
    CANCELLED = "cancelled"
    WORKER_LOST = "worker_lost"
    BUILD_ERROR = "build_error"
    LOCALIZE_ERROR = "localize_error"
    UPLOAD_ERROR = "upload_error"
    INVALID_INPUT = "invalid_input"


class Phase(StrEnum):
    BUILD = "build"
    LOCALIZE = "localize"
    RUN = "run"
    STAGE = "stage"


class BuildStatus(StrEnum):
    QUEUED = "queued"
    BUILDING = "building"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class Build:
    id: int
    algorithm_id: int
    status: BuildStatus
    commit: str | None
    log_path: str | None
    algorithm_dir: str | None  # parent of the cloned repository; run_command is relative to it
    env_dir: str | None  # the algorithm's virtualenv
    message: str | None
    created: datetime
    started: datetime | None
    finished: datetime | None
    image: str | None = None  # the container image jobs run in; None: on the host
    container: str | None = None  # "podman <image>" or "host (<why>)"; None: no image asked


@dataclass(frozen=True)
class Algorithm:
    id: int
    name: str
    version: str
    owner: str
    spec: dict[str, Any]  # the validated AlgorithmSpec as JSON
    package: str | None  # the registration body as deployed (YAML, JSON or CWL)
    package_type: str | None  # its media type
    builtin: bool
    created: datetime
    updated: datetime
    build: Build | None = None

    @property
    def process_id(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass(frozen=True)
class Job:
    id: str
    seq: int  # insertion order; the stable sort key of every listing
    algorithm_id: int
    algorithm: str
    version: str
    owner: str
    queue: str
    priority: int
    tags: list[str]
    inputs: dict[str, Any]
    status: JobStatus
    reason: Reason | None
    phase: Phase | None
    message: str | None
    batch_id: str | None
    attempts: int
    cancel_requested: bool
    created: datetime
    started: datetime | None
    finished: datetime | None
    updated: datetime
    work_dir: str | None
    output_url: str | None
    exit_code: int | None
    progress: int | None
    metrics: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    deduped: bool = False
    # How the submitter asked to be answered (OGC ``response``, ``outputs``, ``subscriber``).
    request: dict[str, Any] = field(default_factory=dict)

    @property
    def process_id(self) -> str:
        return f"{self.algorithm}:{self.version}"

    @property
    def tag(self) -> str:
        return self.tags[0] if self.tags else ""


@dataclass(frozen=True)
class Attempt:
    id: int
    job_id: str
    number: int
    host: str
    worker: str
    pid: int | None  # the supervisor's pid
    pid_started: float | None  # its create time, so a reused pid is not mistaken for it
    started: datetime
    finished: datetime | None
    exit_code: int | None
    node: str | None = None  # machine + PID namespace (executors/recovery.py node_id)
    run_pid: int | None = None  # the run command, once started
    run_pid_started: float | None = None
    run_cgroup: list[str] | None = None
    run_finished: datetime | None = None  # the run command ended (its result is known)


@dataclass(frozen=True)
class JobEvent:
    job_id: str
    at: datetime
    status: JobStatus
    reason: Reason | None
    message: str | None


@dataclass(frozen=True)
class Batch:
    id: str
    owner: str
    created: datetime
    counts: dict[str, int]
    total: int
    process: str | None = None  # name:version of its jobs
    max_running: int | None = None  # at most this many of its jobs run at once


@dataclass(frozen=True)
class Page:
    """One page of a keyset-paginated listing."""

    items: list[Any]
    number_matched: int
    next_cursor: str | None
    # False: number_matched is a lower bound (a filter the counters do not key matched
    # more jobs than the store counts one by one; see store.jobstore.COUNT_LIMIT).
    number_matched_exact: bool = True

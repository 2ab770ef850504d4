"""Settings: ``DPS_*`` environment variables and an optional YAML file.

One :class:`Settings` object is built at start-up and passed down; nothing
reads the environment after that.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_DURATION = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_size(value: str | int | float | None) -> int | None:
    """``"8GB"``, ``"512MiB"``, ``"5G"`` or a number of bytes -> bytes."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return int(value)
    match = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]?)(i?B)?\s*", str(value), re.IGNORECASE)
    if not match:
        raise ValueError(f"not a size: {value!r} (use e.g. 8GB, 512MB or a number of bytes)")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def format_size(value: int) -> str:
    """Bytes for people: 8589934592 -> "8 GiB", 1536 -> "1.5 KiB"."""
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if value >= factor:
            return f"{value / factor:.3g} {unit}"
    return f"{value} B"


def parse_duration(value: str | int | float | None) -> float | None:
    """``"10m"``, ``"2h"``, ``"90s"`` or a number of seconds -> seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    match = re.fullmatch(r"\s*([0-9.]+)\s*([smhd]?)\s*", str(value))
    if not match:
        raise ValueError(f"not a duration: {value!r} (use e.g. 90, 90s, 10m or 2h)")
    return float(match.group(1)) * _DURATION[match.group(2)]


class QueueConfig(BaseModel):
    """A resource queue (DESIGN §8)."""

    name: str
    memory: int | None = None  # bytes; enforced where the host allows it
    cpus: float | None = None
    time_limit: float | None = None  # seconds; bounds the run phase only
    slots: int = 1  # jobs of this queue running at once, over all workers
    guest: bool = False  # usable by users without an account
    default: bool = False
    # Processes (and threads) a job may have at once; the kernel refuses more (cgroup pids).
    max_processes: int = 1024
    # False: the job's box has no network but loopback (bwrap only).
    network: bool = True
    # At most this many jobs of one user run in this queue at once (None: no cap).
    max_running_per_user: int | None = None

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, value: Any) -> int | None:
        return parse_size(value)

    @field_validator("time_limit", mode="before")
    @classmethod
    def _time_limit(cls, value: Any) -> float | None:
        return parse_duration(value)


DEFAULT_QUEUES = [
    QueueConfig(name="dps-sandbox", memory="8GB", cpus=1, time_limit="10m", slots=1, guest=True),
    QueueConfig(name="dps-worker-8gb", memory="8GB", cpus=1, slots=2, default=True),
    QueueConfig(name="dps-worker-16gb", memory="16GB", cpus=2, slots=1),
    QueueConfig(name="dps-worker-32gb", memory="32GB", cpus=4, slots=1),
]


class Settings(BaseSettings):
    """Everything configurable. Each field can be set as ``DPS_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="DPS_", extra="ignore")

    # Where the SQLite database, storage, builds, work dirs and caches live.
    data_dir: Path = Field(default_factory=lambda: Path.home() / ".opendps")
    # SQLAlchemy URL; default: SQLite in the data dir (WAL mode).
    database_url: str | None = None
    # fsspec URL of the output storage; default: <data_dir>/storage. s3://bucket/prefix for S3.
    storage_url: str | None = None
    # S3 endpoint settings (for SeaweedFS, MinIO, ...); empty means AWS defaults.
    s3_endpoint_url: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_region: str = "us-east-1"
    # local: jobs run on this machine; celery: dispatched through broker_url.
    executor: Literal["local", "celery"] = "local"
    broker_url: str = "amqp://guest:guest@127.0.0.1:5672//"
    # Whether the embedded server runs jobs itself (False: only `dps worker`s do).
    run_jobs: bool = True
    queues: list[QueueConfig] = Field(default_factory=lambda: list(DEFAULT_QUEUES))
    # auth off: every request acts as the user "anonymous".
    auth: bool = False
    # Key for encrypting secrets at rest; generated into the data dir when absent.
    secret_key: str | None = None
    # Public base URL of the API (what jobs see as DPS_API_URL); default from host/port.
    base_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    # A job whose supervisor died is re-queued until it has had this many attempts.
    max_attempts: int = 3
    # Seconds between SIGTERM and SIGKILL when a job is timed out or cancelled.
    kill_grace: float = 5.0
    # Input downloads: tries per URL and the whole localize phase's limit (seconds).
    download_tries: int = 3
    download_timeout: float = 60.0
    localize_time_limit: float = 6 * 3600
    stage_time_limit: float = 6 * 3600
    # Whether file inputs may be local files (file:// URLs or paths). They can read anything
    # the server can, so by default they are allowed only while auth is off (one user).
    allow_local_inputs: bool | None = None
    # With auth on, s3:// inputs are read (with the server's S3 credentials) only from these
    # buckets; "*" allows any. Empty: no s3:// inputs while auth is on.
    allowed_s3_buckets: list[str] = Field(default_factory=list)
    # Whether input downloads, callbacks and registration hrefs may reach loopback, private
    # and link-local addresses (directly or through a redirect). Default: only while auth
    # is off (one person on their own machine).
    allow_private_urls: bool | None = None
    # Whether a repository_url may be a local path or file:// URL (the server clones it).
    # Default: only while auth is off.
    allow_local_repositories: bool | None = None
    # Request bodies larger than this answer 413; POST /batches has its own, larger limit.
    max_request_bytes: int = 64 * 1024**2
    max_batch_request_bytes: int = 512 * 1024**2
    # Registrations (YAML, JSON, CWL, fetched executionUnit hrefs) larger than this are refused.
    max_registration_bytes: int = 5 * 1024**2
    # How jobs and builds are boxed: auto = bwrap when installed, else process (DESIGN §12).
    isolation: Literal["auto", "bwrap", "process"] = "auto"
    # The unprivileged user jobs and builds run as when the server runs as root.
    job_user: str = "dps-job"
    # Host variables a job or build may see (besides the run contract's); names ending
    # in "*" are prefixes. Proxies are not passed unless listed here.
    job_env_allowlist: list[str] = Field(
        default_factory=lambda: ["PATH", "LANG", "LANGUAGE", "LC_*", "TZ", "TERM"]
    )
    # A build (its build command) is stopped after this long (seconds or 10m / 2h).
    build_time_limit: float = 3600.0
    # Builds running at once (one user's slow build does not hold up the others).
    build_slots: int = 2
    # A running job whose supervisor is gone is recovered within this many seconds; in
    # scale-out, a worker silent this long has its jobs recovered (re-queued within
    # max_attempts, else failed worker_lost). Workers beat every quarter of it.
    heartbeat_timeout: float = 60.0
    # Keep the work dirs of successful jobs (failed jobs' are always kept, for debugging).
    keep_work_dirs: bool = False
    # How often an idle executor looks for new work (seconds); submit also wakes it.
    poll_interval: float = 0.5
    # Log lines as text, or as JSON objects (one per line, with job_id where one applies).
    log_format: Literal["text", "json"] = "text"

    @field_validator(
        "max_request_bytes", "max_batch_request_bytes", "max_registration_bytes", mode="before"
    )
    @classmethod
    def _byte_limit(cls, value: Any) -> int | None:
        return parse_size(value)

    @field_validator("build_time_limit", "heartbeat_timeout", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> float | None:
        return parse_duration(value)

    # Container images for registrations with docker_container_url (DESIGN §15):
    # auto = podman when it is installed; podman = podman (missing: the fallback applies);
    # none = never build or run images.
    container_engine: Literal["auto", "podman", "none"] = "auto"
    # When an image cannot be used (no engine, a base image that cannot be found or pulled):
    # host = build and run on the host, saying so on the process and on every job;
    # refuse = the build fails with a message naming the image.
    container_fallback: Literal["host", "refuse"] = "host"
    # Seconds a base image pull may take before the base counts as "cannot be pulled".
    container_pull_timeout: float = 300.0
    # The OCI runtime podman uses; default: runc when installed (crun cannot run on hosts
    # with a cgroup v1/v2 hybrid), else podman's own default.
    container_runtime: str | None = None
    # Fair share inside a queue: a freed slot goes to the waiting user with the fewest
    # running jobs there; priority orders a user's own jobs. False: priority, then age.
    fair_share: bool = True
    # Notification e-mail: smtp://host:port (smtps:// for TLS from the start; credentials
    # may be given in the URL or below). None: e-mail notifications are refused at submit.
    smtp_url: str | None = None
    mail_from: str = "opendps@localhost"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False  # upgrade a plain smtp:// connection with STARTTLS
    # Webhook and callback deliveries: tries before giving up, and the first back-off
    # (seconds; doubled after each failed try, at most 10 minutes).
    delivery_tries: int = 8
    delivery_backoff: float = 2.0

    @model_validator(mode="after")
    def _defaults(self) -> Settings:
        self.data_dir = Path(self.data_dir).expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'dps.db'}"
        if not self.storage_url:
            self.storage_url = str(self.data_dir / "storage")
        if not self.base_url:
            self.base_url = f"http://{self.host}:{self.port}"
        if not self.queues:
            self.queues = list(DEFAULT_QUEUES)
        return self

    @property
    def local_inputs_allowed(self) -> bool:
        return (not self.auth) if self.allow_local_inputs is None else self.allow_local_inputs

    @property
    def private_urls_allowed(self) -> bool:
        return (not self.auth) if self.allow_private_urls is None else self.allow_private_urls

    @property
    def local_repositories_allowed(self) -> bool:
        if self.allow_local_repositories is None:
            return not self.auth
        return self.allow_local_repositories

    @property
    def default_queue(self) -> str:
        for queue in self.queues:
            if queue.default:
                return queue.name
        return self.queues[0].name

    def queue(self, name: str) -> QueueConfig | None:
        return next((q for q in self.queues if q.name == name), None)

    @property
    def builds_dir(self) -> Path:
        return self.data_dir / "builds"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @classmethod
    def load(cls, config_file: Path | str | None = None, **overrides: Any) -> Settings:
        """Environment, then the YAML file, then explicit overrides (CLI flags)."""
        values: dict[str, Any] = {}
        if config_file:
            text = Path(config_file).read_text()
            values = yaml.safe_load(text) or {}
            if not isinstance(values, dict):
                raise ValueError(f"{config_file}: expected a mapping of settings")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

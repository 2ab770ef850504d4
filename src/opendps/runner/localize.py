"""Download a job's file inputs into its ``input/`` folder (DESIGN §4, §9 "Downloads").

Each URL is fetched at most once per machine: downloads land in a shared cache,
``<cache_dir>/<sha256 of the URL>/<basename>``, and are copied into the job's ``input/``
folder (a reflink where the file system can share blocks copy-on-write, else a real
copy). A lock file per cache entry lets concurrent jobs share one download.

Naming: a file lands in ``input/`` under the last segment of the URL path, query string
dropped and percent-decoding applied (``…/a%20b.tif?x=1`` → ``a b.tif``). When two
different URLs share a basename, the later ones get ``_1``, ``_2``, … before the
extension, in input order (``x.tif``, ``x_1.tif``; ``x.tar.gz`` → ``x_1.tar.gz``).
The same URL given twice lands once. A URL without a usable basename is named after its
input.

Never a hard link (DESIGN §12): a job that appended to a hard-linked input changed the
cached file (and a local source) for every later job. Cached files are read-only too.
"""

from __future__ import annotations

import contextlib
import email.utils
import errno
import fcntl
import hashlib
import os
import random
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import fsspec
import httpx

from opendps.errors import InvalidInput, LocalizeError
from opendps.net import urls as url_parser
from opendps.net.safety import UnsafeUrl, UrlPolicy

CHUNK_SIZE = 1024 * 1024  # bytes per read/write: memory use is bounded by this, not the file
BACKOFF_BASE = 1.0  # seconds before the second try; doubles per try (with jitter)
BACKOFF_CAP = 30.0  # longest back-off between tries
RETRY_AFTER_CAP = 60.0  # a server's Retry-After is honoured up to this many seconds
CANCEL_CHECK_INTERVAL = 0.5  # should_cancel may hit a database: ask at most this often
LOCK_POLL_INTERVAL = 0.1  # while another job downloads the same URL
S3_PROTOCOLS = ("s3", "s3a")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# ioctl(FICLONE): share the blocks copy-on-write (btrfs, xfs); a write then copies them.
_FICLONE = 0x40049409
_NO_REFLINK = {
    errno.EXDEV,
    errno.EPERM,
    errno.ENOTSUP,
    errno.EOPNOTSUPP,
    errno.EINVAL,
    errno.ENOTTY,
}


class LocalizeCancelled(LocalizeError):
    """cancelled"""


@dataclass(frozen=True)
class Download:
    """One localized file. A cache hit has ``cached=True`` and ``attempts=0``."""

    input: str
    url: str
    path: Path  # where it landed, inside input_dir
    bytes: int
    seconds: float
    cached: bool
    attempts: int  # network requests made (tries), 0 for a cache hit


@dataclass(frozen=True)
class LocalizeReport:
    downloads: list[Download]

    @property
    def total_bytes(self) -> int:
        return sum(d.bytes for d in self.downloads)

    @property
    def seconds(self) -> float:
        return sum(d.seconds for d in self.downloads)

    @property
    def rate(self) -> float:
        """Bytes per second over all files (cache hits included), 0.0 when nothing took time."""
        return self.total_bytes / self.seconds if self.seconds > 0 else 0.0


def localize_inputs(
    file_inputs: Mapping[str, str | list[str]],
    input_dir: Path,
    cache_dir: Path,
    *,
    tries: int = 3,
    timeout: float = 60.0,
    deadline: float | None = None,
    storage_options: Mapping[str, Any] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    policy: UrlPolicy | None = None,
) -> LocalizeReport:
    """Download every file input into ``input_dir``.

    Parameters
    ----------
    file_inputs
        Input name → URL (``https://``, ``http://``, ``s3://``, ``file://``, any fsspec
        URL, or an absolute path), a list of URLs, a JSON-array string or a
        comma-separated string of URLs. Empty values are skipped.
    tries
        Requests per URL before giving up on connection errors, timeouts, 429 and 5xx.
    timeout
        Seconds without progress (connect, or between two reads) before a try fails.
    deadline
        ``time.monotonic()`` value by which the whole phase must be done.
    storage_options
        fsspec options: flat ones (``key``, ``secret``, ``endpoint_url`` …) apply to
        ``s3://``; ``{"<protocol>": {...}}`` entries apply to that protocol.
    should_cancel
        Polled while downloading; when it returns true, :class:`LocalizeCancelled`
        (a :class:`LocalizeError` with message ``"cancelled"``) is raised.
    policy
        Which URLs may be fetched (schemes, s3 buckets, private addresses); checked for
        every URL before anything is fetched, and for every HTTP request, redirects
        included. Default: everything.

    Raises
    ------
    LocalizeError
        Naming the URL and the reason (``"download of URL failed: HTTP 404 Not Found"``).
    """
    policy = policy or UrlPolicy()
    plan = plan_downloads(file_inputs)
    for input_name, url, _ in plan:  # the same rules as at submit, before any download
        try:
            policy.check_input(url, input_name)
        except InvalidInput as exc:
            raise LocalizeError(exc.message) from None
    input_dir.mkdir(parents=True, exist_ok=True)
    fetched: dict[str, Path] = {}
    downloads = []
    session = _Session(max(1, tries), timeout, deadline, storage_options, should_cancel, policy)
    with session:
        for input_name, url, filename in plan:
            session.check(url)
            target = input_dir / filename
            started = time.monotonic()
            if url in fetched:  # the same URL twice: it is already in place
                size, cached, attempts = target.stat().st_size, True, 0
            else:
                try:
                    size, cached, attempts = _fetch(session, url, target, cache_dir)
                except OSError as exc:  # disk full, unwritable input dir, ...
                    raise LocalizeError(f"download of {url} failed: {exc}") from exc
                fetched[url] = target
            seconds = time.monotonic() - started
            downloads.append(Download(input_name, url, target, size, seconds, cached, attempts))
    return LocalizeReport(downloads)


# -- planning: values → URLs → file names ---------------------------------------------------


def plan_downloads(file_inputs: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(input name, url, file name)`` per file, in input order, names made unique."""
    plan = []
    name_of: dict[str, str] = {}
    taken: set[str] = set()
    for input_name, value in file_inputs.items():
        for url in parse_urls(value, input_name):
            if url not in name_of:
                name_of[url] = _unique_name(url_basename(url) or input_name, taken)
                taken.add(name_of[url])
            plan.append((input_name, url, name_of[url]))
    return plan


def parse_urls(value: Any, input_name: str = "input") -> list[str]:
    """A file input's value as a list of URLs: the one parser submit uses too
    (``opendps.net.urls``), each URL checked to be something this module can fetch."""
    try:
        urls = url_parser.parse_urls(value, input_name)
    except InvalidInput as exc:
        raise LocalizeError(exc.message) from None
    for url in urls:
        _source_kind(url, input_name)  # reject bad values before anything is downloaded
    return urls


def url_basename(url: str) -> str:
    """The percent-decoded last path segment of ``url`` (``""`` when there is none)."""
    if url.startswith("/"):
        name = url.rstrip("/").rsplit("/", 1)[-1]
    else:
        name = unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    # A decoded "%2F" must not create sub-folders; NUL cannot be in a file name.
    name = name.replace("/", "_").replace("\0", "_")
    return "" if name in (".", "..") else name


def _unique_name(name: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    stem, ext = _split_extension(name)
    number = 1
    while f"{stem}_{number}{ext}" in taken:
        number += 1
    return f"{stem}_{number}{ext}"


def _split_extension(name: str) -> tuple[str, str]:
    """(stem, extension): ``x.tar.gz`` → (``x``, ``.tar.gz``), ``.env`` → (``.env``, ``""``)."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        return name, ""
    if stem.endswith(".tar"):
        return stem[:-4], ".tar." + ext
    return stem, "." + ext


def _source_kind(url: str, input_name: str = "input") -> str:
    """``"local"``, ``"http"`` or ``"fsspec"``; LocalizeError for anything else."""
    if url.startswith("/"):
        return "local"
    match = _URL.match(url)
    if not match:
        raise LocalizeError(f"input {input_name!r}: {url!r} is not a URL or an absolute path")
    protocol = match.group(1).lower()
    if protocol == "file":
        return "local"
    if protocol in ("http", "https"):
        return "http"
    if protocol in fsspec.available_protocols():
        return "fsspec"
    raise LocalizeError(f"input {input_name!r}: unsupported URL scheme in {url!r}")


# -- fetching one URL -----------------------------------------------------------------------


def _fetch(session: _Session, url: str, target: Path, cache_dir: Path) -> tuple[int, bool, int]:
    """Put ``url`` at ``target``; return (bytes, cached, attempts)."""
    if _source_kind(url) == "local":
        source = _local_path(url)
        _link_or_copy(source, target)
        return target.stat().st_size, False, 1
    entry = cache_dir / hashlib.sha256(url.encode()).hexdigest()
    entry.mkdir(parents=True, exist_ok=True)
    cached_file = entry / (url_basename(url) or "download")
    with _cache_lock(entry / ".lock", session, url):
        if cached_file.is_file():
            _link_or_copy(cached_file, target)
            return cached_file.stat().st_size, True, 0
        part = entry / f".{uuid.uuid4().hex}.part"
        try:
            if _source_kind(url) == "http":
                attempts = _download_http(session, url, part)
            else:
                attempts = _download_fsspec(session, url, part)
            part.chmod(0o444)
            os.replace(part, cached_file)
        finally:
            part.unlink(missing_ok=True)
        _link_or_copy(cached_file, target)
        return cached_file.stat().st_size, False, attempts


def _local_path(url: str) -> Path:
    path = Path(unquote(urlsplit(url).path)) if url.startswith("file:") else Path(url)
    if not path.is_file():
        raise LocalizeError(f"download of {url} failed: no such file {path}")
    return path


def _link_or_copy(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` (a reflink when possible), atomically; never a link."""
    part = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.part")
    try:
        if not _reflink(source, part):
            shutil.copyfile(source, part)
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)


def _reflink(source: Path, target: Path) -> bool:
    with open(source, "rb") as src, open(target, "wb") as dst:
        try:
            fcntl.ioctl(dst.fileno(), _FICLONE, src.fileno())
            return True
        except OSError as exc:
            if exc.errno not in _NO_REFLINK:
                raise
            return False


@contextlib.contextmanager
def _cache_lock(path: Path, session: _Session, url: str) -> Iterator[None]:
    """An exclusive lock per cache entry; waiting honours cancel and the deadline."""
    with open(path, "a") as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                session.check(url, force=True)
                time.sleep(LOCK_POLL_INTERVAL)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class _Retry(Exception):
    """A failed try that may succeed later (connection error, timeout, 429, 5xx)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _with_retries(session: _Session, url: str, attempt_once: Callable[[], None]) -> int:
    """Run ``attempt_once`` up to ``tries`` times; return the number of tries used."""
    for attempt in range(1, session.tries + 1):
        session.check(url, force=True)
        try:
            attempt_once()
            return attempt
        except _Retry as exc:
            session.check(url, force=True)  # a timeout caused by the deadline is not retried
            if attempt == session.tries:
                raise LocalizeError(f"download of {url} failed after {attempt} tries: {exc}")
            delay = exc.retry_after if exc.retry_after is not None else _backoff(attempt)
            session.sleep(delay, url, reason=str(exc))
    raise AssertionError("unreachable")


def _backoff(attempt: int) -> float:
    return min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1)) * random.uniform(0.75, 1.0)


# -- http(s) ----------------------------------------------------------------------------


def _download_http(session: _Session, url: str, part: Path) -> int:
    state: dict[str, str] = {}  # the validator (ETag / Last-Modified) for resuming
    return _with_retries(session, url, lambda: _http_try(session, url, part, state))


def _http_try(session: _Session, url: str, part: Path, state: dict[str, str]) -> None:
    """One GET. A broken earlier try is resumed with a Range request when the server allows."""
    # identity: store the bytes as served (a .gz stays gzip), and Content-Length is exact.
    headers = {"Accept-Encoding": "identity"}
    have = part.stat().st_size if part.exists() else 0
    if have and "validator" in state:
        headers.update({"Range": f"bytes={have}-", "If-Range": state["validator"]})
    try:
        with session.client.stream(
            "GET", url, headers=headers, timeout=session.timeout_now(url)
        ) as resp:
            _check_status(url, resp)
            append = resp.status_code == 206 and _range_start(resp) == have
            if resp.status_code == 206 and not append:  # not the range we asked for
                state.pop("validator", None)  # next try: the whole file again
                raise _Retry("the server answered with a different byte range")
            if resp.headers.get("accept-ranges") == "bytes":
                validator = resp.headers.get("etag") or resp.headers.get("last-modified")
                if validator and not validator.startswith("W/"):
                    state["validator"] = validator
            expected = _content_length(resp)
            with open(part, "ab" if append else "wb") as out:
                for chunk in resp.iter_raw(CHUNK_SIZE):
                    out.write(chunk)
                    session.check(url)
            size = part.stat().st_size
            if expected is not None and size != expected + (have if append else 0):
                raise _Retry(f"connection closed after {size} bytes")
    except (httpx.UnsupportedProtocol, httpx.InvalidURL, httpx.TooManyRedirects) as exc:
        raise LocalizeError(f"download of {url} failed: {exc}")
    except UnsafeUrl as exc:  # the URL, or a redirect, leads to a refused address
        raise LocalizeError(f"download of {url} refused: {exc.message}") from None
    except httpx.TransportError as exc:
        raise _Retry(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


def _check_status(url: str, resp: httpx.Response) -> None:
    status = resp.status_code
    # HTTP/2 has no reason phrase on the wire: use the standard one.
    text = f"HTTP {status} {resp.reason_phrase or httpx.codes.get_reason_phrase(status)}"
    if status == 429 or status >= 500:
        raise _Retry(text.strip(), _retry_after(resp))
    if status >= 300 or status < 200:
        raise LocalizeError(f"download of {url} failed: {text.strip()}")


def _retry_after(resp: httpx.Response) -> float | None:
    """Retry-After as seconds (a number or an HTTP date), capped; None when absent/bad."""
    value = resp.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, min(seconds, RETRY_AFTER_CAP))


def _range_start(resp: httpx.Response) -> int | None:
    match = re.match(r"bytes (\d+)-", resp.headers.get("content-range", ""))
    return int(match.group(1)) if match else None


def _content_length(resp: httpx.Response) -> int | None:
    value = resp.headers.get("content-length")
    return int(value) if value and value.isdigit() else None


# -- s3:// and other fsspec URLs -----------------------------------------------------------


def _download_fsspec(session: _Session, url: str, part: Path) -> int:
    protocol = url.split("://", 1)[0].lower()
    options = _fsspec_options(session.storage_options, protocol)
    try:
        fs, path = fsspec.core.url_to_fs(url, **options)
    except ImportError as exc:
        raise LocalizeError(f"download of {url} failed: {exc}")

    def attempt_once() -> None:
        try:
            with fs.open(path, "rb", block_size=8 * CHUNK_SIZE) as src, open(part, "wb") as out:
                while chunk := src.read(CHUNK_SIZE):
                    out.write(chunk)
                    session.check(url)
        except FileNotFoundError:
            raise LocalizeError(f"download of {url} failed: not found")
        except PermissionError as exc:
            raise LocalizeError(f"download of {url} failed: access denied ({exc})")
        except (OSError, TimeoutError) as exc:  # s3fs reports 5xx, throttling, resets so
            raise _Retry(f"{type(exc).__name__}: {exc}")

    return _with_retries(session, url, attempt_once)


def _fsspec_options(storage_options: Mapping[str, Any] | None, protocol: str) -> dict[str, Any]:
    """Options for one protocol: its own ``{protocol: {...}}`` entry, else flat ones for S3."""
    options = dict(storage_options or {})
    nested = options.get(protocol)
    if isinstance(nested, Mapping):
        return dict(nested)
    if protocol not in S3_PROTOCOLS:
        return {}
    protocols = set(fsspec.available_protocols())
    return {k: v for k, v in options.items() if not (k in protocols and isinstance(v, Mapping))}


# -- the phase's shared state: client, deadline, cancel --------------------------------------


class _Session:
    """What every download of one localize call shares: settings, HTTP client, clock."""

    def __init__(
        self,
        tries: int,
        timeout: float,
        deadline: float | None,
        storage_options: Mapping[str, Any] | None,
        should_cancel: Callable[[], bool] | None,
        policy: UrlPolicy,
    ) -> None:
        self.policy = policy
        self.tries = tries
        self.timeout = timeout
        self.deadline = deadline
        self.storage_options = storage_options
        self._should_cancel = should_cancel
        self._next_cancel_check = 0.0
        self._client: httpx.Client | None = None

    def __enter__(self) -> _Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._client is not None:
            self._client.close()

    @property
    def client(self) -> httpx.Client:
        if self._client is None:  # created on first use: s3-only jobs never need one
            self._client = self.policy.client(
                "input download", follow_redirects=True, timeout=self.timeout
            )
        return self._client

    def check(self, url: str, force: bool = False) -> None:
        """Raise when cancelled or past the deadline; the cancel callback is rate-limited."""
        now = time.monotonic()
        if self.deadline is not None and now >= self.deadline:
            raise LocalizeError(f"downloading inputs exceeded its time limit (at {url})")
        if self._should_cancel is not None and (force or now >= self._next_cancel_check):
            self._next_cancel_check = now + CANCEL_CHECK_INTERVAL
            if self._should_cancel():
                raise LocalizeCancelled("cancelled")

    def timeout_now(self, url: str) -> float:
        """The per-request timeout, shortened so that no read outlives the deadline."""
        if self.deadline is None:
            return self.timeout
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.check(url)
        return max(0.001, min(self.timeout, left))

    def sleep(self, seconds: float, url: str, reason: str) -> None:
        """Back off before the next try; fail at once if the deadline would pass first."""
        if self.deadline is not None and time.monotonic() + seconds >= self.deadline:
            raise LocalizeError(
                f"download of {url} failed: {reason}; no time left to retry "
                "within the time limit for downloading inputs"
            )
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0:
            self.check(url, force=True)
            time.sleep(min(left, CANCEL_CHECK_INTERVAL))

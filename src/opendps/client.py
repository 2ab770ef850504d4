"""A Python client for the opendps HTTP API (the OGC surface at ``/`` plus its extensions).

It mirrors the CLI's verbs and is what ``dps`` uses to talk to a server::

    from opendps.client import Client

    with Client("http://127.0.0.1:8000") as dps:
        dps.register("algorithm.yml")
        dps.wait_for_build("my_algo:main")
        job = dps.submit("my_algo:main", {"input_file": "https://…/x.tif", "scale": 2})
        final = dps.wait(job["jobID"])
        dps.download_outputs(job["jobID"], "out/")

Every error answer becomes :class:`APIError` carrying the server's problem-details
``detail``; a server that cannot be reached raises :class:`ServerUnreachable` (a subclass,
``status`` 0). Only ``opendps.errors`` is imported from the project, so the client can be
vendored or used against a remote server with nothing else installed.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import httpx
import yaml

from opendps.errors import OpenDPSError

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL_STATUSES = frozenset({"successful", "failed", "dismissed"})
BUILD_DONE = frozenset({"ready", "failed"})
#: Seconds the server holds one status request of ``Client.wait`` (its read timeout is longer).
WAIT_WINDOW = 10.0
CHUNK = 1 << 20  # download chunk size (bytes)

# Filter keywords of list_jobs/iter_jobs -> the query parameter the API knows them by.
_FILTER_NAMES = {
    "status": "status",
    "process_id": "processID",
    "processID": "processID",
    "algorithm": "processID",
    "queue": "queue",
    "tag": "tag",
    "batch": "batch",
    "datetime": "datetime",
    "min_duration": "minDuration",
    "minDuration": "minDuration",
    "max_duration": "maxDuration",
    "maxDuration": "maxDuration",
}


class APIError(OpenDPSError):
    """The server answered with an error."""

    def __init__(self, status: int, detail: str, body: Any = None) -> None:
        super().__init__(detail)
        self.status = status  # the HTTP status; 0 when no answer came
        self.detail = detail  # the problem-details ``detail`` (or the best text we have)
        self.body = body  # the decoded answer (dict for JSON, else text)

    def __str__(self) -> str:
        return f"{self.status}: {self.detail}" if self.status else self.detail


class ServerUnreachable(APIError):
    """No answer from the server (refused, DNS, timeout)."""

    def __init__(self, detail: str) -> None:
        super().__init__(0, detail)


def _problem_detail(response: httpx.Response) -> tuple[str, Any]:
    """The most useful message in an error answer, and the decoded body."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, dict):
        for key in ("detail", "message", "description", "error", "title"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value, body
    text = body.strip() if isinstance(body, str) else ""
    return text or f"HTTP {response.status_code} {response.reason_phrase}", body


def registration_id(text: str) -> str | None:
    """``name:version`` of a registration (MAAP/ADE YAML or CWL), if it can be told."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    if not isinstance(data, dict):
        return None
    name = _first(data, "algorithm_name", "algo_name")
    version = _first(data, "algorithm_version", "version")
    if name is None and ("cwlVersion" in data or "$graph" in data):
        name, version = _cwl_id(data)
    if name is None or version is None:
        return None
    return f"{name}:{version}"


def _first(data: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        if data.get(key) not in (None, ""):
            return str(data[key])
    return None


def _cwl_id(data: Mapping[str, Any]) -> tuple[str | None, str | None]:
    entry: Any = data
    if "$graph" in data:
        graph = [g for g in data["$graph"] if isinstance(g, dict)]
        entry = next((g for g in graph if g.get("class") == "Workflow"), graph[0] if graph else {})
    version = _first(data, "s:version", "s:softwareVersion") or _first(
        entry, "s:version", "s:softwareVersion"
    )
    name = _first(entry, "id")
    return (name.lstrip("#") if name else None), version


def _duplicate_id(detail: str) -> str | None:
    match = re.search(r"process (\S+) is already registered", detail)
    return match.group(1) if match else None


class Client:
    """A connection to one opendps server.

    Parameters
    ----------
    url
        The server's base URL (``DPS_URL`` in the CLI).
    token
        A bearer token; sent as ``Authorization: Bearer …`` when given.
    timeout
        Seconds for connecting and for each answer (streams wait as long as it takes).
    """

    def __init__(
        self, url: str = DEFAULT_URL, token: str | None = None, timeout: float = 30
    ) -> None:
        self.url = url.rstrip("/")
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- plumbing -------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request; error answers raise :class:`APIError`."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise ServerUnreachable(f"{self.url} did not answer in time ({exc})") from exc
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"cannot reach the server at {self.url}: {exc}") from exc
        _raise_for_problem(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:  # a proxy's HTML page, or not an opendps server at all
            raise APIError(
                response.status_code,
                f"{self.url} answered {method} {path} with something that is not JSON "
                f"({response.headers.get('content-type', 'no content type')}); "
                "is this the URL of an opendps server?",
                response.text[:2000],
            ) from None

    @staticmethod
    def _pid(process_id: str) -> str:
        return quote(process_id, safe=":")

    @staticmethod
    def _jid(job_id: str) -> str:
        return quote(job_id, safe="")

    # -- algorithms -----------------------------------------------------------------------

    def register(self, path_or_text: str | Path, replace: bool = True) -> dict[str, Any]:
        """Register an algorithm from a YAML/JSON/CWL file or its text.

        With ``replace`` an existing name+version is replaced (``PUT``), as
        ``dps algorithm register`` does; without it the server's 409 is raised.
        Answers the process summary, whose ``build`` shows the build state.
        """
        text = _registration_text(path_or_text)
        headers = {"Content-Type": "application/yaml"}
        try:
            return self._json("POST", "/processes", content=text.encode(), headers=headers)
        except APIError as exc:
            if exc.status != 409 or not replace:
                raise
            process_id = registration_id(text) or _duplicate_id(exc.detail)
            if process_id is None:
                raise
        return self._json(
            "PUT", f"/processes/{self._pid(process_id)}", content=text.encode(), headers=headers
        )

    def list_algorithms(self) -> list[dict[str, Any]]:
        """Every registered process summary (all pages)."""
        return list(self._follow("/processes", {"limit": 1000}, "processes"))

    def describe(self, process_id: str) -> dict[str, Any]:
        """The process description of ``name`` (latest version) or ``name:version``."""
        return self._json("GET", f"/processes/{self._pid(process_id)}")

    def delete_algorithm(self, process_id: str) -> None:
        self.request("DELETE", f"/processes/{self._pid(process_id)}")

    def build_log(self, process_id: str) -> str:
        return self.request("GET", f"/processes/{self._pid(process_id)}/build/log").text

    def wait_for_build(
        self, process_id: str, timeout: float | None = 600, poll: float = 0.5
    ) -> dict[str, Any]:
        """Poll until the build is ``ready`` or ``failed``; answers the process description.

        Raises ``TimeoutError`` when ``timeout`` seconds pass first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            description = self.describe(process_id)
            build = description.get("build") or {"status": "ready"}
            if build.get("status") in BUILD_DONE:
                return description
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"the build of {process_id} is still {build.get('status')} after {timeout} s"
                )
            time.sleep(poll)

    # -- jobs -----------------------------------------------------------------------------

    def submit(
        self,
        process_id: str,
        inputs: Mapping[str, Any],
        queue: str | None = None,
        tag: str | None = None,
        priority: int = 5,
        dedup: bool = False,
    ) -> dict[str, Any]:
        """Create a job; answers its statusInfo (``jobID``, ``status``, …)."""
        body: dict[str, Any] = {"inputs": dict(inputs), "priority": priority, "dedup": dedup}
        if queue:
            body["queue"] = queue
        if tag:
            body["tag"] = tag
        return self._json(
            "POST",
            f"/processes/{self._pid(process_id)}/execution",
            json=body,
            headers={"Prefer": "respond-async"},
        )

    def status(self, job_id: str, wait: float = 0) -> dict[str, Any]:
        """The job's statusInfo; with ``wait`` the server answers as soon as the job ends,
        or after ``wait`` seconds (its ``JobService.wait``)."""
        params = {"wait": f"{wait:.3f}"} if wait > 0 else None
        return self._json("GET", f"/jobs/{self._jid(job_id)}", params=params)

    def wait(
        self,
        job_id: str,
        timeout: float | None = None,
        poll: float = 0.5,
        on_update: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Wait until the job is terminal; answers the final statusInfo.

        The server does the waiting (``GET /jobs/{id}?wait=``), so the job's end is seen at
        once; each request is held at most WAIT_WINDOW seconds. ``on_update`` is called with
        the statusInfo whenever status, message or progress changed between answers (and once
        at the start). Raises ``TimeoutError`` after ``timeout`` seconds. ``poll`` is kept for
        callers of earlier versions and ignored.
        """
        del poll
        deadline = None if timeout is None else time.monotonic() + timeout
        seen: tuple[Any, ...] | None = None
        window = 0.0  # the first answer at once, for on_update
        while True:
            info = self.status(job_id, wait=window)
            key = (info.get("status"), info.get("message"), info.get("progress"))
            if on_update is not None and key != seen:
                on_update(info)
            seen = key
            if info.get("status") in TERMINAL_STATUSES:
                return info
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"job {job_id} is still {info.get('status')} after {timeout} s")
            window = WAIT_WINDOW if remaining is None else min(WAIT_WINDOW, remaining)

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Dismiss a job: a queued one at once, a running one within a second or so."""
        return self._json("DELETE", f"/jobs/{self._jid(job_id)}")

    def list_jobs(
        self, *, limit: int = 10, next: str | None = None, **filters: Any
    ) -> dict[str, Any]:
        """One page of ``GET /jobs``: ``{"jobs", "numberMatched", "numberReturned", "links"}``.

        Filters: ``status``, ``process_id`` (alias ``algorithm``), ``queue``, ``tag``,
        ``batch``, ``datetime``, ``min_duration``, ``max_duration``; ``status`` and
        ``process_id`` may be lists. ``next`` is the cursor of a previous page.
        """
        params = _job_params(filters)
        params.append(("limit", limit))
        if next:
            params.append(("next", next))
        return self._json("GET", "/jobs", params=params)

    def iter_jobs(self, *, page_size: int = 100, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every matching job, newest first, following ``next`` links page by page."""
        params = [*_job_params(filters), ("limit", page_size)]
        return self._follow("/jobs", params, "jobs")

    def logs(self, job_id: str) -> dict[str, str]:
        """``{"stdout": …, "stderr": …}`` so far (or final, once the job ended)."""
        return self._json("GET", f"/jobs/{self._jid(job_id)}/logs")

    def follow_logs(self, job_id: str) -> Iterator[tuple[str, str]]:
        """Yield ``(stream, text)`` as the job writes, ``stream`` being ``stdout`` or
        ``stderr``; ends when the job is terminal (server-sent events)."""
        path = f"/jobs/{self._jid(job_id)}/logs"
        timeout = httpx.Timeout(self._http.timeout.connect, read=None)
        try:
            with self._http.stream(
                "GET",
                path,
                params={"follow": "true"},
                timeout=timeout,
                headers={"Accept": "text/event-stream"},
            ) as response:
                if response.is_error:
                    response.read()
                    _raise_for_problem(response)
                for event, data in _sse_events(response.iter_lines()):
                    if event == "end":
                        return
                    yield event, json.loads(data)
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"lost the log stream from {self.url}: {exc}") from exc

    def outputs(self, job_id: str) -> dict[str, Any]:
        """``{"location", "outputs": [{"path", "size", "href", "url"}]}``."""
        return self._json("GET", f"/jobs/{self._jid(job_id)}/outputs")

    def download_outputs(self, job_id: str, dest_dir: str | Path) -> list[Path]:
        """Stream every staged output into ``dest_dir`` (keeping sub-folders); the paths
        written."""
        dest = Path(dest_dir).resolve()
        written = []
        for item in self.outputs(job_id)["outputs"]:
            target = _safe_target(dest, item["path"])
            href = item.get("href") or f"/jobs/{self._jid(job_id)}/outputs/{quote(item['path'])}"
            self._download(href, target)
            written.append(target)
        return written

    def _download(self, href: str, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        try:
            with self._http.stream("GET", href) as response:
                if response.is_error:
                    response.read()
                    _raise_for_problem(response)
                with open(partial, "wb") as handle:
                    for chunk in response.iter_bytes(CHUNK):
                        handle.write(chunk)
        except httpx.TransportError as exc:
            partial.unlink(missing_ok=True)
            raise ServerUnreachable(f"download of {href} failed: {exc}") from exc
        partial.replace(target)  # never leave a half file under the real name

    def metrics(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"/jobs/{self._jid(job_id)}/metrics")

    def results(self, job_id: str) -> dict[str, Any]:
        """The OGC results document; a failed job raises APIError with its message."""
        return self._json("GET", f"/jobs/{self._jid(job_id)}/results")

    def events(self, job_id: str) -> list[dict[str, Any]]:
        """The job's history: one entry per transition."""
        return self._json("GET", f"/jobs/{self._jid(job_id)}/events")["events"]

    # -- batches --------------------------------------------------------------------------

    def submit_batch(
        self,
        process_id: str,
        inputs: Iterable[Mapping[str, Any]],
        queue: str | None = None,
        tag: str | None = None,
        priority: int = 5,
        *,
        max_running: int | None = None,
        notify: Mapping[str, Any] | None = None,
        dedup: bool = False,
    ) -> dict[str, Any]:
        """One job per inputs mapping, all validated before any is created; answers
        ``{"batchID", "total", "counts", "jobIDs", …}``. ``max_running`` caps how many of
        its jobs run at once; ``notify`` = ``{"email": [...], "webhook": "https://…",
        "on": ["finished", "failed"]}``."""
        body: dict[str, Any] = {
            "process": process_id,
            "jobs": [{"inputs": dict(i)} for i in inputs],
            "priority": priority,
        }
        if queue:
            body["queue"] = queue
        if tag:
            body["tags"] = [tag]
        if max_running is not None:
            body["max_running"] = max_running
        if notify:
            body["notify"] = dict(notify)
        if dedup:
            body["dedup"] = True
        return self._json("POST", "/batches", json=body)

    def submit_batch_file(
        self,
        process_id: str,
        path: str | Path,
        queue: str | None = None,
        tag: str | None = None,
        priority: int | None = None,
        *,
        max_running: int | None = None,
        notify: Mapping[str, Any] | None = None,
        dedup: bool = False,
    ) -> dict[str, Any]:
        """Upload a CSV (header = input names, optional queue/tag/priority columns) or a
        JSON-lines file (``.jsonl``/``.ndjson``) as it is: the server validates every row
        and names a bad one by row, line and column."""
        path = Path(path)
        jsonl = path.suffix.lower() in (".jsonl", ".ndjson", ".json")
        return self._submit_rows(
            process_id,
            path.read_bytes(),
            "application/x-ndjson" if jsonl else "text/csv",
            queue=queue,
            tag=tag,
            priority=priority,
            max_running=max_running,
            notify=notify,
            dedup=dedup,
        )

    def submit_glob(
        self,
        process_id: str,
        pattern: str,
        input_name: str,
        queue: str | None = None,
        tag: str | None = None,
        priority: int | None = None,
        *,
        inputs: Mapping[str, Any] | None = None,
        max_running: int | None = None,
        notify: Mapping[str, Any] | None = None,
        dedup: bool = False,
        storage_options: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One job per object matching ``pattern`` (``s3://bucket/granules/*.tif``, a local
        or ``file://`` glob), its URL as input ``input_name``; ``inputs`` are the same for
        every job. The glob is expanded here, with this machine's credentials (fsspec;
        ``storage_options`` e.g. ``{"endpoint_url": …}`` for S3). The server decides
        whether local files are allowed as inputs."""
        urls = expand_glob(pattern, storage_options)
        if not urls:
            raise APIError(0, f"no object matches {pattern!r}")
        shared = dict(inputs or {})
        lines = "".join(json.dumps({"inputs": {**shared, input_name: u}}) + "\n" for u in urls)
        return self._submit_rows(
            process_id,
            lines.encode(),
            "application/x-ndjson",
            queue=queue,
            tag=tag,
            priority=priority,
            max_running=max_running,
            notify=notify,
            dedup=dedup,
        )

    def _submit_rows(
        self, process_id: str, body: bytes, media_type: str, **shared: Any
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"process": process_id}
        for name in ("queue", "tag", "priority", "max_running"):
            if shared.get(name) is not None and shared.get(name) != "":
                params[name] = shared[name]
        if shared.get("notify"):
            params["notify"] = json.dumps(dict(shared["notify"]))
        if shared.get("dedup"):
            params["dedup"] = "true"
        return self._json(
            "POST", "/batches", params=params, content=body, headers={"Content-Type": media_type}
        )

    def batch_status(self, batch_id: str) -> dict[str, Any]:
        """``{"batchID", "total", "counts": {status: n}, "stats": {"rate_per_hour",
        "eta_seconds", "by_reason", "run_seconds", "peak_memory_bytes"}, …}``."""
        return self._json("GET", f"/batches/{self._jid(batch_id)}")

    def batch_report(self, batch_id: str) -> dict[str, Any]:
        """The end-of-batch report: counts, rates, duration, failures by reason (each with
        an example message)."""
        return self._json("GET", f"/batches/{self._jid(batch_id)}/report")

    def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        """Answers at once; the queued jobs are dismissed within moments."""
        return self._json("DELETE", f"/batches/{self._jid(batch_id)}")

    def retry_batch(
        self, batch_id: str, reasons: Iterable[str] | None = None, queue: str | None = None
    ) -> dict[str, Any]:
        """Put the batch's failed and dismissed jobs (only those ``reasons``, when given)
        back in the queue (``queue``, when given); answers the batch with ``jobIDs`` = the
        jobs requeued (same ids: every attempt stays in each job's history)."""
        body: dict[str, Any] = {}
        if reasons:
            body["reasons"] = list(reasons)
        if queue:
            body["queue"] = queue
        return self._json("POST", f"/batches/{self._jid(batch_id)}/retry", json=body)

    # -- service --------------------------------------------------------------------------

    def queues(self) -> list[dict[str, Any]]:
        return self._json("GET", "/queues")["queues"]

    def healthz(self) -> dict[str, Any]:
        return self._json("GET", "/healthz")

    # -- paging ---------------------------------------------------------------------------

    def _follow(self, path: str, params: Any, member: str) -> Iterator[dict[str, Any]]:
        """Yield ``member`` items of every page, following each page's ``next`` link."""
        url: str | None = path
        while url is not None:
            page = self._json("GET", url, params=params)
            yield from page.get(member, [])
            url = next(
                (link["href"] for link in page.get("links", []) if link.get("rel") == "next"), None
            )
            params = None  # the next link carries every parameter


def _raise_for_problem(response: httpx.Response) -> None:
    if response.is_error:
        detail, body = _problem_detail(response)
        raise APIError(response.status_code, detail, body)


def _registration_text(path_or_text: str | Path) -> str:
    """A path (Path, or a one-line string naming a file) is read; anything else is text."""
    if isinstance(path_or_text, Path):
        return path_or_text.read_text()
    if "\n" not in path_or_text and len(path_or_text) < 4096:
        candidate = Path(path_or_text).expanduser()
        if candidate.is_file():
            return candidate.read_text()
    return path_or_text


def _job_params(filters: Mapping[str, Any]) -> list[tuple[str, Any]]:
    params: list[tuple[str, Any]] = []
    for key, value in filters.items():
        if value is None:
            continue
        if key not in _FILTER_NAMES:
            raise TypeError(f"unknown job filter {key!r}; use one of {sorted(_FILTER_NAMES)}")
        values = value if isinstance(value, list | tuple | set) else [value]
        params += [(_FILTER_NAMES[key], str(v)) for v in values]
    return params


def _sse_events(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Parse a text/event-stream into ``(event, data)`` pairs."""
    event, data = "message", []
    for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
    if data:
        yield event, "\n".join(data)


def _safe_target(dest: Path, relative: str) -> Path:
    """``dest/relative``, refusing paths that would land outside ``dest``."""
    parts = PurePosixPath(relative).parts
    if not parts or relative.startswith("/") or ".." in parts:
        raise APIError(0, f"refusing to write output {relative!r} outside {dest}")
    return dest.joinpath(*parts)


def expand_glob(pattern: str, storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """URLs of the objects matching a glob: ``s3://…`` (needs s3fs), ``file://…`` or a
    local path (answered as ``file://`` URLs, which a server with auth on refuses)."""
    import fsspec

    if "://" not in pattern:
        pattern = "file://" + str(Path(pattern).expanduser().absolute())
    protocol = pattern.split("://", 1)[0]
    fs, path = fsspec.core.url_to_fs(pattern, **dict(storage_options or {}))
    found = sorted(p for p in fs.glob(path) if not fs.isdir(p))
    if protocol == "file":
        return [f"file://{p}" for p in found]
    return [f"{protocol}://{p}" for p in found]

"""A real HTTP file server on 127.0.0.1 with scriptable misbehaviour.

Use the ``http_files`` fixture::

    def test_download(http_files):
        http_files.add("x.tif", b"data")           # or a size: http_files.add("big", 200 << 20)
        http_files.fail("x.tif", [500])            # the next request answers 500, then 200
        http_files.fail("y", [429], retry_after=1) # 429 with Retry-After: 1
        http_files.slow("z", 5.0)                  # every request waits 5 s before answering
        http_files.throttle("z", 1 << 20)          # bodies of "z" trickle at 1 MiB/s
        http_files.truncate("big", after=1 << 20)  # next response breaks off after 1 MiB
        http_files.redirect("r", "http://…/x")    # answers 302 with that Location
        url = http_files.url("x.tif")
        ...
        assert http_files.requests("x.tif") == 2

Files are served from disk in chunks, with ``Content-Length``, ``ETag``,
``Last-Modified`` and single-range ``Range``/``If-Range`` support, so large and resumed
downloads behave as against a real server. Unknown paths answer 404.
"""

from __future__ import annotations

import email.utils
import re
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest

CHUNK = 256 * 1024


@dataclass
class _Behaviour:
    statuses: list[tuple[int, dict[str, str]]] = field(default_factory=list)  # next answers
    delay: float = 0.0  # seconds before every answer
    rate: float | None = None  # body bytes per second
    truncations: list[int] = field(default_factory=list)  # next bodies break after N bytes


@dataclass(frozen=True)
class _Plan:
    """How to answer one request."""

    status: int  # 0: serve the file
    headers: dict[str, str]
    delay: float
    rate: float | None
    truncate: int | None


class HttpFiles:
    """The server's state; tests script it through the public methods."""

    def __init__(self, root: Path, host: str = "127.0.0.1") -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._behaviour: dict[str, _Behaviour] = defaultdict(_Behaviour)
        self._requests: dict[str, list[dict[str, str]]] = defaultdict(list)
        self._server = _Server((host, 0), _Handler)
        self._server.files = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- scripting --------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, name: str) -> str:
        """The URL of ``name`` (which may contain ``/``); special characters are quoted."""
        return f"{self.base_url}/{quote(name)}"

    def add(self, name: str, content: bytes | int) -> Path:
        """Serve ``content`` at ``name``; an int makes a sparse file of zeros that size."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, int):
            with open(path, "wb") as f:
                f.truncate(content)  # sparse: instant, and no disk or memory used
        else:
            path.write_bytes(content)
        return path

    def fail(
        self, name: str, statuses: Iterable[int], *, retry_after: float | str | None = None
    ) -> None:
        """The next requests for ``name`` answer these statuses, one each, then normally."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        with self._lock:
            self._behaviour[name].statuses.extend((s, headers) for s in statuses)

    def redirect(self, name: str, location: str, status: int = 302) -> None:
        """Every request for ``name`` answers ``status`` with ``Location: location``."""
        with self._lock:
            self._behaviour[name].statuses.extend([(status, {"Location": location})] * 100)

    def slow(self, name: str, seconds: float) -> None:
        """Every request for ``name`` waits ``seconds`` before the answer starts."""
        with self._lock:
            self._behaviour[name].delay = seconds

    def throttle(self, name: str, bytes_per_second: float) -> None:
        """Bodies of ``name`` are sent at about this rate (for progress and cancel tests)."""
        with self._lock:
            self._behaviour[name].rate = bytes_per_second

    def truncate(self, name: str, after: int, times: int = 1) -> None:
        """The next ``times`` bodies of ``name`` stop after ``after`` bytes (connection closed)."""
        with self._lock:
            self._behaviour[name].truncations.extend([after] * times)

    def requests(self, name: str) -> int:
        """How many requests for ``name`` arrived (any method, query ignored)."""
        with self._lock:
            return len(self._requests[name])

    def request_headers(self, name: str) -> list[dict[str, str]]:
        """The headers of each request for ``name`` (lower-case names), oldest first."""
        with self._lock:
            return [dict(h) for h in self._requests[name]]

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in slow()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    # -- used by the handler ----------------------------------------------------------------

    def _record(self, name: str, headers: dict[str, str]) -> _Plan:
        """Count the request and take what its answer should be."""
        with self._lock:
            self._requests[name].append(headers)
            behaviour = self._behaviour[name]
            status, status_headers = behaviour.statuses.pop(0) if behaviour.statuses else (0, {})
            truncate = behaviour.truncations.pop(0) if behaviour.truncations else None
            return _Plan(status, status_headers, behaviour.delay, behaviour.rate, truncate)

    def _wait(self, seconds: float) -> None:
        self._stopping.wait(seconds)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    files: HttpFiles

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or give up close the socket mid-answer: expected here.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        files = self.server.files
        name = unquote(urlsplit(self.path).path).lstrip("/")
        plan = files._record(name, {k.lower(): v for k, v in self.headers.items()})
        if plan.delay:
            files._wait(plan.delay)
        if plan.status:
            return self._send_error(plan.status, plan.headers)
        path = (files.root / name).resolve()
        if not path.is_relative_to(files.root) or not path.is_file():
            return self._send_error(404, {})
        self._send_file(path, body, plan)

    def _send_error(self, status: int, headers: dict[str, str]) -> None:
        payload = f"{status} {self.responses.get(status, ('',))[0]}\n".encode()
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _send_file(self, path: Path, body: bool, plan: _Plan) -> None:
        info = path.stat()
        size, etag = info.st_size, f'"{info.st_mtime_ns:x}-{info.st_size:x}"'
        start = self._range_start(size, etag)
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", email.utils.formatdate(info.st_mtime, usegmt=True))
        self.end_headers()
        if body:
            count = size - start if plan.truncate is None else plan.truncate
            self._copy_body(path, start, count, plan.rate)
        if plan.truncate is not None:  # the client sees fewer bytes than Content-Length promised
            self._hang_up()

    def _range_start(self, size: int, etag: str) -> int:
        """The start of a satisfiable ``bytes=N-`` range, else 0 (send everything)."""
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", "").strip())
        if_range = self.headers.get("If-Range")
        if not match or (if_range is not None and if_range != etag):
            return 0
        start = int(match.group(1))
        return start if 0 < start < size else 0

    def _copy_body(self, path: Path, start: int, count: int, rate: float | None) -> None:
        chunk_size = CHUNK if rate is None else max(1024, min(CHUNK, int(rate / 20)))
        began, sent = time.monotonic(), 0
        with open(path, "rb") as f:
            f.seek(start)
            while count > 0 and (chunk := f.read(min(chunk_size, count))):
                self.wfile.write(chunk)
                count -= len(chunk)
                sent += len(chunk)
                if rate is not None:  # pace: sleep until `sent` bytes are due
                    self.server.files._wait(began + sent / rate - time.monotonic())

    def _hang_up(self) -> None:
        self.close_connection = True
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def http_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpFiles]:
    """A started :class:`HttpFiles` serving a fresh folder; stopped after the test."""
    files = HttpFiles(tmp_path_factory.mktemp("http_files"))
    files.start()
    try:
        yield files
    finally:
        files.stop()

"""A line collector on 127.0.0.1 for jobs to report to: boxed jobs can write only their own
work dir, so tests that count runs listen here instead of reading a shared file.

A job reports with bash alone: ``echo "start $run" > /dev/tcp/127.0.0.1/$PORT``.
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator

import pytest


class RunLog:
    def __init__(self) -> None:
        self._lines: list[str] = []
        self._lock = threading.Lock()
        log = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                for raw in self.rfile:
                    with log._lock:
                        log._lines.append(raw.decode(errors="replace").strip())

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def report(self, words: str) -> str:
        """The bash line that sends ``words`` here."""
        return f'echo "{words}" > /dev/tcp/127.0.0.1/{self.port}'

    def lines(self) -> list[str]:
        with self._lock:
            return list(self._lines)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def run_log() -> Iterator[RunLog]:
    log = RunLog()
    yield log
    log.close()

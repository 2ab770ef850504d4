"""Helpers for the OGC API - Processes suites: a live ``dps server`` per test module,
JSON Schemas of the OGC 1.0 documents (re-expressed from the standard's YAML), a callback
receiver, and small waits.

The server is the real thing (``python -m opendps.cli server``, see live_server.py) with
one queue of four slots, so jobs run through the executor and runner as in production.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
import yaml

from tests.support.live_server import LiveServer

OGC = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/"
OGC2 = "http://www.opengis.net/def/exceptions/ogcapi-processes-2/1.0/"
REL = "http://www.opengis.net/def/rel/ogc/1.0/"
TERMINAL = {"successful", "failed", "dismissed"}


@contextmanager
def running_server(
    tmp_path_factory: pytest.TempPathFactory, name: str
) -> Iterator[tuple[LiveServer, httpx.Client]]:
    """A started server (one queue, four slots) and an HTTP client for it; for
    module-scoped fixtures."""
    folder = tmp_path_factory.mktemp(name)
    config = folder / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "queues": [{"name": "q", "slots": 4, "default": True}],
                "kill_grace": 1,
                "poll_interval": 0.1,
            }
        )
    )
    server = LiveServer(folder / "data", config=config)
    try:
        server.start()
        with httpx.Client(base_url=server.url, timeout=60) as client:
            yield server, client
    finally:
        server.close()


def wait_job(http: httpx.Client, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        info = http.get(f"/jobs/{job_id}").json()
        if info["status"] in TERMINAL:
            return info
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {info['status']} after {timeout} s")
        time.sleep(0.1)


def wait_status(http: httpx.Client, job_id: str, status: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while http.get(f"/jobs/{job_id}").json()["status"] != status:
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} never became {status}")
        time.sleep(0.05)


def wait_build(http: httpx.Client, process_id: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        build = http.get(f"/processes/{process_id}").json().get("build") or {}
        if build.get("status") == "ready":
            return
        assert build.get("status") != "failed", build
        assert time.monotonic() < deadline, f"build of {process_id} not ready"
        time.sleep(0.1)


# -- the OGC 1.0 documents as JSON Schemas (draft 7) -------------------------------------------

LINK = {
    "type": "object",
    "required": ["href"],
    "properties": {k: {"type": "string"} for k in ("href", "rel", "type", "hreflang", "title")},
}
EXCEPTION = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
}
LANDING_PAGE = {
    "type": "object",
    "required": ["links"],
    "properties": {
        "title": {"type": "string"},
        "description": {"type": "string"},
        "links": {"type": "array", "items": LINK},
    },
}
CONF_CLASSES = {
    "type": "object",
    "required": ["conformsTo"],
    "properties": {"conformsTo": {"type": "array", "items": {"type": "string"}}},
}
DATE_TIME = {
    "type": "string",
    "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$",
}
STATUS_INFO = {
    "type": "object",
    "required": ["jobID", "status", "type"],
    "properties": {
        "processID": {"type": "string"},
        "type": {"enum": ["process"]},
        "jobID": {"type": "string"},
        "status": {"enum": ["accepted", "running", "successful", "failed", "dismissed"]},
        "message": {"type": "string"},
        "created": DATE_TIME,
        "started": DATE_TIME,
        "finished": DATE_TIME,
        "updated": DATE_TIME,
        "progress": {"type": "integer", "minimum": 0, "maximum": 100},
        "links": {"type": "array", "items": LINK},
    },
}
JOB_LIST = {
    "type": "object",
    "required": ["jobs", "links"],
    "properties": {
        "jobs": {"type": "array", "items": STATUS_INFO},
        "links": {"type": "array", "items": LINK},
    },
}
PROCESS_SUMMARY = {
    "type": "object",
    "required": ["id", "version"],
    "properties": {
        "id": {"type": "string"},
        "version": {"type": "string"},
        "title": {"type": "string"},
        "description": {"type": "string"},
        "keywords": {"type": "array", "items": {"type": "string"}},
        "jobControlOptions": {
            "type": "array",
            "items": {"enum": ["sync-execute", "async-execute", "dismiss"]},
        },
        "outputTransmission": {"type": "array", "items": {"enum": ["value", "reference"]}},
        "links": {"type": "array", "items": LINK},
    },
}
PROCESS_LIST = {
    "type": "object",
    "required": ["processes", "links"],
    "properties": {
        "processes": {"type": "array", "items": PROCESS_SUMMARY},
        "links": {"type": "array", "items": LINK},
    },
}
DESCRIPTION_TYPE = {"title": {"type": "string"}, "description": {"type": "string"}}
INPUT_DESCRIPTION = {
    "type": "object",
    "required": ["schema"],
    "properties": {
        **DESCRIPTION_TYPE,
        "minOccurs": {"type": "integer"},
        "maxOccurs": {"oneOf": [{"type": "integer"}, {"enum": ["unbounded"]}]},
        "schema": {"type": "object"},
    },
}
OUTPUT_DESCRIPTION = {
    "type": "object",
    "required": ["schema"],
    "properties": {**DESCRIPTION_TYPE, "schema": {"type": "object"}},
}
PROCESS = {
    "allOf": [
        PROCESS_SUMMARY,
        {
            "type": "object",
            "properties": {
                "inputs": {"type": "object", "additionalProperties": INPUT_DESCRIPTION},
                "outputs": {"type": "object", "additionalProperties": OUTPUT_DESCRIPTION},
            },
        },
    ]
}
BBOX = {
    "type": "object",
    "required": ["bbox"],
    "properties": {
        "bbox": {
            "type": "array",
            "items": {"type": "number"},
            "oneOf": [{"minItems": 4, "maxItems": 4}, {"minItems": 6, "maxItems": 6}],
        },
        "crs": {"type": "string"},
    },
}
INLINE_OR_REF = {
    "anyOf": [  # results.yaml (anyOf: a string is also valid base64 there)
        {"type": ["string", "number", "integer", "boolean", "array"]},
        BBOX,
        {"type": "object", "required": ["value"]},
        LINK,
    ]
}
RESULTS = {"type": "object", "additionalProperties": INLINE_OR_REF}


def assert_valid(schema: dict[str, Any], document: Any) -> None:
    errors = [str(e) for e in jsonschema_rs.validator_for(schema).iter_errors(document)]
    assert not errors, f"{errors[:3]} in {json.dumps(document)[:500]}"


def assert_exception(response: httpx.Response, status: int, type_uri: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0] in (
        "application/json",
        "application/problem+json",
    )
    body = response.json()
    assert_valid(EXCEPTION, body)
    if type_uri is not None:
        assert body["type"] == type_uri, body
    return body


def link(document: dict[str, Any], rel: str) -> dict[str, Any] | None:
    return next((x for x in document.get("links", []) if x.get("rel") == rel), None)


# -- a receiver for subscriber callbacks -------------------------------------------------------


class CallbackReceiver:
    """Collects the JSON bodies POSTed to http://127.0.0.1:<port>/<name>."""

    def __init__(self) -> None:
        self.received: list[tuple[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                try:
                    parsed: Any = json.loads(body)
                except ValueError:
                    parsed = body.decode(errors="replace")
                receiver.received.append((self.path, parsed))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{name}"

    def wait_for(self, path: str, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for got, body in self.received:
                if got == "/" + path:
                    return body
            time.sleep(0.05)
        raise AssertionError(f"no callback on /{path}; got {self.received}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path

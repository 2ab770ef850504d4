"""Results as OGC 1.0 answers them (/req/core/process-execute-sync-*, job-results-*).

``response=document``: a JSON results document. ``response=raw``: one output by value is
the output itself in its media type; more than one is ``multipart/related`` (one part per
output, ``Content-ID`` the output id, reference parts empty with ``Content-Location``);
only references is 204 with one ``Link`` header per output.

A job's own results (built-ins, CWL) are what it wrote to ``output/_results.json``; links
in it whose ``href`` is relative point into the job's staged outputs. Jobs without their
own results (MAAP algorithms) have one output, ``output``: links to their staged files.
An output given back by reference without a file of its own is served at
``/jobs/{id}/results/{output}`` (as the 2.0 draft does).
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote, urljoin

from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from opendps.api.problems import problem_media_type
from opendps.errors import OGC_EXCEPTIONS, NotFound
from opendps.models import Job, Reason

RESULTS_REL = "http://www.opengis.net/def/rel/ogc/1.0/results"
FAILED_AS_BAD_REQUEST = {Reason.INVALID_INPUT, Reason.LOCALIZE_ERROR}


class NoSuchOutput(NotFound):
    """The job has no output of this name."""

    ogc_type = "no-such-output"


def guess_media_type(path: str) -> str:
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


def outputs_prefix(base: str, job: Job) -> str:
    return f"{base}/jobs/{quote(job.id, safe='')}/outputs/"


def _absolute(value: Any, prefix: str) -> Any:
    if isinstance(value, list):
        return [_absolute(v, prefix) for v in value]
    if (
        isinstance(value, dict)
        and isinstance(value.get("href"), str)
        and "://" not in value["href"]
    ):
        return {**value, "href": urljoin(prefix, value["href"])}
    return value


def stored_results(services: Any, job: Job, base: str, user: str) -> dict[str, Any]:
    """The job's outputs with absolute links."""
    prefix = outputs_prefix(base, job)
    if job.results:
        return {name: _absolute(value, prefix) for name, value in job.results.items()}
    listing = services.jobs.outputs(job.id, user=user)
    files = [f for f in listing["outputs"] if not f["path"].startswith("_")]
    return {
        "output": [
            {
                "href": prefix + quote(f["path"]),
                "type": guess_media_type(f["path"]),
                "title": f["path"],
            }
            for f in files
        ]
    }


def is_link(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("href"), str)


def _qualified(value: Any) -> bool:
    return isinstance(value, dict) and "value" in value and "href" not in value


def media_type_of(value: Any, schema: Mapping[str, Any] | None = None) -> str:
    schema = schema or {}
    if is_link(value):
        return value.get("type") or "application/octet-stream"
    if _qualified(value):
        fmt = value.get("format") if isinstance(value.get("format"), dict) else {}
        declared = value.get("mediaType") or fmt.get("mediaType")
        if declared:
            return declared
        value = value["value"]
    if schema.get("contentMediaType"):
        return schema["contentMediaType"]
    if isinstance(value, str):
        return "text/plain; charset=utf-8"
    return "application/json"


def raw_content(value: Any, schema: Mapping[str, Any] | None = None) -> tuple[bytes, str]:
    """An inline output as bytes and a media type."""
    media = media_type_of(value, schema)
    encoding = ""
    if _qualified(value):
        fmt = value.get("format") if isinstance(value.get("format"), dict) else {}
        encoding = str(value.get("encoding") or fmt.get("encoding") or "")
        value = value["value"]
    binary = encoding.lower() == "base64" or (schema or {}).get("contentEncoding") in (
        "base64",
        "binary",
    )
    if isinstance(value, str):
        if binary and not media.startswith("text/"):
            try:
                return base64.b64decode(value, validate=True), media
            except (binascii.Error, ValueError):
                pass  # not base64 after all: answer it as it came
        return value.encode(), media
    return json.dumps(value).encode(), media


def reference_to(
    job: Job, base: str, name: str, value: Any, schema: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """An output as a link: its own when it is one, else the output's results URL."""
    if is_link(value):
        return value
    href = f"{base}/jobs/{quote(job.id, safe='')}/results/{quote(name, safe='')}"
    return {"href": href, "type": media_type_of(value, schema), "title": name}


def _own_output_path(job: Job, base: str, href: str) -> str | None:
    prefix = outputs_prefix(base, job)
    return unquote(href[len(prefix) :]) if href.startswith(prefix) else None


def value_response(
    services: Any,
    job: Job,
    base: str,
    user: str,
    value: Any,
    schema: Mapping[str, Any] | None = None,
) -> Response:
    """One output by value: the file for a link into the job's outputs, a redirect for
    another link, else the inline value in its media type."""
    if is_link(value):
        path = _own_output_path(job, base, value["href"])
        if path is None:
            return RedirectResponse(value["href"], status_code=303)
        handle = services.jobs.open_output(job.id, path, user=user)

        def chunks():  # type: ignore[no-untyped-def]
            with handle:
                while block := handle.read(1 << 20):
                    yield block

        return StreamingResponse(chunks(), media_type=value.get("type") or guess_media_type(path))
    if isinstance(value, list) and not any(isinstance(v, list) for v in value):
        return JSONResponse(value)
    content, media = raw_content(value, schema)
    return Response(content, media_type=media)


def _part_bytes(
    services: Any,
    job: Job,
    base: str,
    user: str,
    value: Any,
    schema: Mapping[str, Any] | None,
) -> tuple[bytes | None, str]:
    if is_link(value):
        path = _own_output_path(job, base, value["href"])
        if path is None:
            return None, value.get("type") or "application/octet-stream"
        with services.jobs.open_output(job.id, path, user=user) as handle:
            return handle.read(), value.get("type") or guess_media_type(path)
    if isinstance(value, list):
        return json.dumps(value).encode(), "application/json"
    return raw_content(value, schema)


def link_header(link: Mapping[str, Any], rel: str, title: str | None = None) -> str:
    parts = [f"<{link['href']}>", f'rel="{rel}"']
    if link.get("type"):
        parts.append(f'type="{link["type"]}"')
    if title or link.get("title"):
        parts.append(f'title="{title or link.get("title")}"')
    return "; ".join(parts)


def render_results(
    services: Any,
    job: Job,
    base: str,
    user: str,
    *,
    response: str,
    modes: Mapping[str, str] | None,
    schemas: Mapping[str, Mapping[str, Any]],
) -> Response:
    """The results of a successful job, as ``response`` and ``modes`` (output -> value |
    reference; None: every output by value) ask. Outputs the job did not produce are left
    out."""
    results = stored_results(services, job, base, user)
    if modes is None:
        modes = dict.fromkeys(results, "value")
    chosen = {name: mode for name, mode in modes.items() if name in results}
    if response == "document":
        document = {}
        for name, mode in chosen.items():
            value = results[name]
            if mode == "reference":
                value = reference_to(job, base, name, value, schemas.get(name))
            document[name] = value
        return JSONResponse(document)
    if not chosen or all(mode == "reference" for mode in chosen.values()):
        answer = Response(status_code=204)
        for name in chosen:
            link = reference_to(job, base, name, results[name], schemas.get(name))
            answer.headers.append("Link", link_header(link, RESULTS_REL, name))
        return answer
    if len(chosen) == 1:
        name = next(iter(chosen))
        return value_response(services, job, base, user, results[name], schemas.get(name))
    return multipart(services, job, base, user, results, chosen, schemas)


def multipart(
    services: Any,
    job: Job,
    base: str,
    user: str,
    results: Mapping[str, Any],
    chosen: Mapping[str, str],
    schemas: Mapping[str, Mapping[str, Any]],
) -> Response:
    """RFC 2387 ``multipart/related``, one part per output."""
    boundary = f"dps-{uuid.uuid4().hex}"
    body = bytearray()
    root_type = ""
    for name, mode in chosen.items():
        value, schema = results[name], schemas.get(name)
        if mode == "reference":
            link = reference_to(job, base, name, value, schema)
            content: bytes | None = None
            media, location = link.get("type") or "application/octet-stream", link["href"]
        else:
            content, media = _part_bytes(services, job, base, user, value, schema)
            location = value["href"] if content is None else None
        root_type = root_type or media.split(";")[0].strip()
        headers = [f"Content-ID: <{name}>", f"Content-Type: {media}"]
        if location:
            headers.append(f"Content-Location: {location}")
        head = "".join(f"{h}\r\n" for h in headers)
        body += f"--{boundary}\r\n{head}\r\n".encode()
        body += (content or b"") + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    media_type = f'multipart/related; boundary="{boundary}"; type="{root_type}"'
    return Response(bytes(body), media_type=media_type)


def failure_response(job: Job, base: str, request: Request | None) -> JSONResponse:
    """A failed job's exception (/req/core/job-results-failed): the status and type follow
    the reason it failed."""
    if job.reason in FAILED_AS_BAD_REQUEST:
        status, type_uri, title = 400, OGC_EXCEPTIONS + "invalid-parameter-value", "Invalid input"
    else:
        status, type_uri, title = 500, OGC_EXCEPTIONS + "job-failed", "Job failed"
    body = {
        "type": type_uri,
        "title": title,
        "status": status,
        "detail": job.message or "the job failed",
        "instance": f"{base}/jobs/{job.id}",
        "jobID": job.id,
        "reason": job.reason.value if job.reason else None,
        "phase": job.phase.value if job.phase else None,
    }
    return JSONResponse(body, status_code=status, media_type=problem_media_type(request))

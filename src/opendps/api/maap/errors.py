"""MAAP's error bodies, by route family (reference §3.1, §5, §6.3).

* ``/api/ogc/…``: OGC-style JSON ``{type, title, status, detail, instance}``;
* the WPS XML routes of maap-py 4.x: an ``ows:ExceptionReport``;
* everything else (secrets, members, ``/api/mas/…``, legacy lists, 401s):
  ``{"code": N, "message": "…"}``.
"""

from __future__ import annotations

import re

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from opendps.api.maap import xml
from opendps.errors import OGC_EXCEPTIONS

OGC_PART2 = "http://www.opengis.net/def/exceptions/ogcapi-processes-2/1.0/"

# WPS XML routes and the (exceptionCode, locator) maap-api-nasa reports for them.
_XML_ROUTES: list[tuple[str, re.Pattern[str], tuple[str, str]]] = [
    ("POST", re.compile(r"^/api/dps/job/?$"), ("FailedJobSubmit", "Execute")),
    ("GET", re.compile(r"^/api/dps/job/?$"), ("FailedGetCapabilities", "GetCapabilities")),
    ("POST", re.compile(r"^/api/dps/job/cancel/[^/]+/?$"), ("FailedJobDismiss", "Dismiss")),
    (
        "GET",
        re.compile(r"^/api/dps/job/describeprocess/.+$"),
        ("FailedDescribeProcess", "DescribeProcess"),
    ),
    (
        "GET",
        re.compile(r"^/api/dps/job/(?!list/?$)[^/]+/status/?$"),
        ("FailedGetStatus", "GetStatus"),
    ),
    ("GET", re.compile(r"^/api/dps/job/[^/]+/metrics/?$"), ("FailedGetMetrics", "GetMetrics")),
    ("GET", re.compile(r"^/api/dps/job/(?!list/?$)[^/]+/?$"), ("FailedGetResult", "GetResult")),
    (
        "GET",
        re.compile(r"^/api/mas/algorithm/(?!resource/?$)[^/]+/?$"),
        ("FailedDescribeAlgo", "DescribeProcess"),
    ),
]


def xml_exception_code(request: Request) -> tuple[str, str] | None:
    path = request.url.path
    for method, pattern, code in _XML_ROUTES:
        if request.method == method and pattern.match(path):
            return code
    return None


def _ogc_type(path: str, status: int) -> str | None:
    if status == 404:
        if path.startswith("/api/ogc/jobs"):
            return OGC_EXCEPTIONS + "no-such-job"
        if path.startswith("/api/ogc/processes"):
            return OGC_EXCEPTIONS + "no-such-process"
    if status == 409 and path.startswith("/api/ogc/processes"):
        return OGC_PART2 + "duplicated-process"
    if status == 403 and path.startswith("/api/ogc/processes"):
        return OGC_PART2 + "immutable-process"
    return None


def ogc_error(path: str, status: int, message: str, **extra: object) -> JSONResponse:
    body = {
        "type": _ogc_type(path, status),
        "title": message,
        "status": status,
        "detail": message,
        "instance": path,
        **extra,
    }
    return JSONResponse(body, status_code=status)


def code_message(status: int, message: str) -> JSONResponse:
    return JSONResponse({"code": status, "message": message}, status_code=status)


def maap_error_shape(request: Request, status: int, message: str) -> Response:
    """The body maap-api-nasa would answer for this path (registered for ``/api/``)."""
    path = request.url.path
    if status in (404, 405) and message in ("Not Found", "Method Not Allowed"):
        message = (
            f"{request.method} {path} is not an endpoint of this server "
            f"({message.lower()}); see docs/maap.md for the MAAP routes it serves"
        )
    code = xml_exception_code(request)
    if code is not None:
        return Response(
            xml.exception_report(code[0], code[1], message),
            status_code=status,
            media_type="application/xml",
        )
    if path.startswith("/api/ogc/") and status != 401:
        return ogc_error(path, status, message)
    return code_message(status, message)

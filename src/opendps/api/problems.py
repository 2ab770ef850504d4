"""Errors as JSON problem details (RFC 7807) with OGC exception types where one applies."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from opendps.errors import OGC_EXCEPTIONS, OpenDPSError

log = logging.getLogger(__name__)
PROBLEM_TYPE = "application/problem+json"


def problem(
    status: int,
    title: str,
    detail: str,
    type_uri: str = "about:blank",
    request: Request | None = None,
    **extra: object,
) -> JSONResponse:
    body = {"type": type_uri, "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=problem_media_type(request))


def problem_media_type(request: Request | None) -> str:
    """``application/problem+json``, unless the client asked for plain JSON only (the OGC
    test suite requires ``application/json`` when it sends ``Accept: application/json``)."""
    accept = request.headers.get("accept", "") if request is not None else ""
    if "application/json" in accept and PROBLEM_TYPE not in accept:
        return "application/json"
    return PROBLEM_TYPE


def _titles(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path")]
        where = ".".join(loc) or "request"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "the request is invalid"


def install_error_handlers(app: FastAPI) -> None:
    """Errors become problem details, or the shape a dialect registered for its prefix."""
    app.state.error_shapes = {}

    @app.exception_handler(OpenDPSError)
    async def _dps_error(request: Request, exc: OpenDPSError) -> JSONResponse:
        handler = _dialect_handler(request)
        if handler is not None:
            return handler(request, exc.status, exc.message)
        if exc.status >= 500:
            log.error("%s: %s", type(exc).__name__, exc.message)
        return problem(exc.status, _titles(exc.status), exc.message, exc.type_uri, request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = describe_validation(exc)
        handler = _dialect_handler(request)
        if handler is not None:
            return handler(request, 400, detail)
        return problem(
            400, "Bad Request", detail, OGC_EXCEPTIONS + "invalid-parameter-value", request
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        handler = _dialect_handler(request)
        if handler is not None:
            return handler(request, exc.status_code, str(exc.detail))
        return problem(exc.status_code, _titles(exc.status_code), str(exc.detail), request=request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        handler = _dialect_handler(request)
        message = f"internal error ({type(exc).__name__}); see the server log"
        if handler is not None:
            return handler(request, 500, message)
        return problem(500, "Internal Server Error", message, request=request)


ErrorShape = Callable[[Request, int, str], Response]


def register_error_shape(app: FastAPI, prefix: str, shape: ErrorShape) -> None:
    """A dialect with its own error bodies (MAAP) claims its path prefix."""
    app.state.error_shapes[prefix] = shape


def _dialect_handler(request: Request) -> ErrorShape | None:
    path = request.url.path
    for prefix, shape in request.app.state.error_shapes.items():
        if path.startswith(prefix):
            return shape
    return None

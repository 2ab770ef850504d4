"""Request bodies, read once and safely for every dialect (DESIGN §11 "Limits on requests").

- A body over ``max_request_bytes`` (``max_batch_request_bytes`` for ``/batches``) answers
  413, checked on ``Content-Length`` before anything is read and again while reading
  (a chunked body has no length).
- Text must be UTF-8; JSON must parse and be nested at most ``MAX_DEPTH`` levels (a
  deeper document made ``json`` raise RecursionError, a 500). Every failure is a 400
  that says what to fix.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opendps.errors import InvalidInput, PayloadTooLarge

MAX_DEPTH = 64  # JSON objects/arrays inside each other; real requests use fewer than 10
_NO_DEFAULT = object()


def decode_text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"the {what} is not valid UTF-8 (byte {exc.start}); send UTF-8 text"
        ) from None


def check_depth(value: Any, what: str, limit: int = MAX_DEPTH) -> None:
    """Refuse documents nested deeper than ``limit`` (iteratively: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                raise InvalidInput(f"the {what} is nested more than {limit} levels deep")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


def parse_json(raw: bytes | str, what: str) -> Any:
    """JSON text → value; InvalidInput (400) for bad UTF-8, bad JSON or deep nesting."""
    text = decode_text(raw, what) if isinstance(raw, bytes) else raw
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"the {what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidInput(f"the {what} is nested more than {MAX_DEPTH} levels deep") from None
    check_depth(value, what)
    return value


async def read_json(request: Request, what: str, *, empty: Any = _NO_DEFAULT) -> Any:
    """The request's JSON body; ``empty`` is answered for an empty body when given."""
    raw = await request.body()
    if not raw.strip():
        if empty is not _NO_DEFAULT:
            return empty
        raise InvalidInput(f"the request body is empty; send the {what} as JSON")
    return parse_json(raw, what)


class BodyLimit:
    """ASGI middleware: 413 for bodies over the limit of their path."""

    def __init__(self, app: ASGIApp, *, limit: int, batch_limit: int) -> None:
        self.app = app
        self.limit = limit
        self.batch_limit = batch_limit

    def limit_for(self, path: str) -> int:
        return self.batch_limit if path.rstrip("/") == "/batches" else self.limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _too_large(send, limit)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:  # raised inside the route: the error handlers answer 413
                    raise PayloadTooLarge(too_large_message(limit))
            return message

        await self.app(scope, limited_receive, send)


def too_large_message(limit: int) -> str:
    return f"the request body is larger than this server accepts ({limit} bytes)"


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps(
        {
            "type": "about:blank",
            "title": "Content Too Large",
            "status": 413,
            "detail": too_large_message(limit),
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

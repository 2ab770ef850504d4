"""Fetching a document a user names by URL (registration hrefs): http(s) only — the
server never opens a local path a user names (an ``executionUnit.href`` naming
``dps.db`` once opened the live database from a second handle) — within the URL policy
(addresses, redirects) and a size cap."""

from __future__ import annotations

import httpx

from opendps.errors import InvalidSpec
from opendps.net.safety import UnsafeUrl, UrlPolicy
from opendps.net.urls import redact, scheme_of

FETCH_TIMEOUT = 30.0  # seconds


def fetch_text(url: str, *, policy: UrlPolicy, max_bytes: int, what: str) -> str:
    """The UTF-8 text at ``url``; InvalidSpec (400) naming ``what`` when it cannot be had."""
    shown = redact(url)
    if not isinstance(url, str) or scheme_of(url) not in ("http", "https"):
        raise InvalidSpec(
            f"{what}: {shown!r} is not an http(s) URL; this server fetches packages only "
            "over http or https (never from a local path)"
        )
    body = bytearray()
    try:
        with (
            policy.client(what, follow_redirects=True, timeout=FETCH_TIMEOUT) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise InvalidSpec(f"{what}: {shown} answered HTTP {response.status_code}")
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise InvalidSpec(
                        f"{what}: the document at {shown} is larger than {max_bytes} bytes"
                    )
    except UnsafeUrl as exc:
        raise InvalidSpec(exc.message) from None
    except httpx.HTTPError as exc:
        raise InvalidSpec(f"{what}: cannot fetch {shown}: {type(exc).__name__}") from None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidSpec(f"{what}: the document at {shown} is not UTF-8 text") from None

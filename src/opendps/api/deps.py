"""Request dependencies: the services and the calling user."""

from __future__ import annotations

from fastapi import Request

from opendps.service.context import Services


def services_of(request: Request) -> Services:
    return request.app.state.services


def request_token(request: Request) -> str | None:
    """Bearer token, MAAP's ``proxy-ticket`` (MAAP_PGT), or ``X-MAAP-API-Key``."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    for header in ("proxy-ticket", "x-maap-api-key", "dps-token", "x-dps-token"):
        value = request.headers.get(header)
        if value:
            return value.strip()
    return None


def current_user(request: Request) -> str:
    cached = getattr(request.state, "user", None)
    if cached is not None:
        return cached
    user = services_of(request).identity.authenticate(request_token(request))
    request.state.user = user
    return user


def base_url(request: Request) -> str:
    """This server's URL as the client reached it (no trailing slash)."""
    return str(request.base_url).rstrip("/")

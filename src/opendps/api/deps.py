"""Request dependencies: the services and the calling user."""

from __future__ import annotations

from fastapi import Request

from opendps.service.context import Services

TOKEN_COOKIE = "dps_token"  # set by /ui/login, HttpOnly, SameSite=Strict, path /ui


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
    """Who is asking: a token header, or under ``/ui/`` the cookie a person signed in with
    (``/ui/login``; the browser sends it only to ``/ui``). With auth off: ``anonymous``."""
    cached = getattr(request.state, "user", None)
    if cached is not None:
        return cached
    token = request_token(request)
    if token is None and request.url.path.startswith("/ui/"):
        token = request.cookies.get(TOKEN_COOKIE) or None
    user = services_of(request).identity.authenticate(token)
    request.state.user = user
    return user


#: What clients and probes read before they sign in (DESIGN §11); everything else needs a
#: valid token when auth is on.
PUBLIC_PATHS = frozenset(
    {"/", "/conformance", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/healthz"}
    | {"/ui", "/ui/login", "/ui/logout"}
)
PUBLIC_PREFIXES = ("/api/environment/config", "/ui/static/")


def signed_in(request: Request) -> None:
    """The app-wide dependency: 401 for a request without a valid token (auth on), on
    every route but the public ones, so that no route can forget to ask."""
    path = request.url.path
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return
    current_user(request)


def base_url(request: Request) -> str:
    """This server's URL as the client reached it (no trailing slash)."""
    return str(request.base_url).rstrip("/")


def page_links(request: Request, path: str, next_cursor: str | None) -> list[dict[str, str]]:
    """``self`` and (when there is more) ``next`` links of a keyset-paginated listing; the
    request's own query parameters are kept, so filters and ``limit`` carry over."""
    from urllib.parse import urlencode

    href = f"{base_url(request)}{path}"
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "next"]
    query = f"?{urlencode(params)}" if params else ""
    links = [{"href": f"{href}{query}", "rel": "self", "type": "application/json"}]
    if next_cursor:
        more = urlencode([*params, ("next", next_cursor)])
        links.append({"href": f"{href}?{more}", "rel": "next", "type": "application/json"})
    return links

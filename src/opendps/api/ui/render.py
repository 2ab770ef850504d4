"""Rendering for the web UI: the Jinja2 environment, its filters, and who is asking.

Templates live in ``opendps/api/templates`` and are autoescaped, so every value a user
or a job supplied (names, descriptions, inputs, logs, messages) is shown as text.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from opendps import __version__
from opendps.api.deps import current_user, services_of
from opendps.errors import Forbidden
from opendps.models import JobStatus
from opendps.net.urls import redact

API_DIR = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = API_DIR / "templates"
STATIC_DIR = API_DIR / "static"
# Pages are self-contained: no inline scripts or styles, nothing from other origins.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


# -- filters ------------------------------------------------------------------------------


def format_time(value: datetime | None) -> str:
    if value is None:
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso_time(value: datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat()


def format_duration(seconds: float | None) -> str:
    """``0.25 s``, ``42 s``, ``3 min 5 s``, ``2 h 4 min``, ``3 d 1 h``."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "—"
    seconds = float(seconds)
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min {secs} s" if secs else f"{minutes} min"


def format_bytes(value: float | None) -> str:
    if value is None:
        return "—"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover


def format_value(value: Any) -> str:
    """An input value as a person would type it: strings bare, the rest as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def path_quote(value: str) -> str:
    """A process id or output path inside a URL path (``:`` and ``/`` kept)."""
    return quote(value, safe=":/")


def url_with(base: str, params: list[tuple[str, str]] | dict[str, Any]) -> str:
    items = params.items() if isinstance(params, dict) else params
    kept = [(k, str(v)) for k, v in items if v not in (None, "")]
    return f"{base}?{urlencode(kept)}" if kept else base


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html", "htm", "xml"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        time=format_time,
        isotime=iso_time,
        duration=format_duration,
        bytes=format_bytes,
        value=format_value,
        pretty=pretty_json,
        pq=path_quote,
        redact=redact,
    )
    env.globals.update(
        version=__version__,
        statuses=[s.value for s in JobStatus],
        terminal={s.value for s in JobStatus if s.terminal},
        url_with=url_with,
    )
    return env


ENV = _environment()


def render(
    request: Request, template: str, context: dict[str, Any] | None = None, status: int = 200
) -> HTMLResponse:
    """Render a page; ``request``, the user and the auth mode are always available."""
    services = services_of(request)
    values = {
        "request": request,
        "user": getattr(request.state, "user", None),
        "auth": services.policy.signs_in,
        "path": request.url.path,
        **(context or {}),
    }
    html = ENV.get_template(template).render(values)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


# -- who is asking ------------------------------------------------------------------------


def ui_user(request: Request) -> str:
    """The caller: a token header as for the API, else the token a person signed in with
    (the ``dps_token`` cookie set by /ui/login). With auth off: ``anonymous``."""
    return current_user(request)


def check_same_origin(request: Request) -> None:
    """Forms post only from our own pages: a cross-site Origin is refused (the sign-in
    cookie is SameSite=Strict as well). Behind a proxy the public host may arrive as
    ``X-Forwarded-Host`` or be configured as ``base_url``."""
    origin = request.headers.get("origin")
    if not origin:
        return
    ours = {request.headers.get("host"), request.url.netloc}
    ours.update(h.strip() for h in request.headers.get("x-forwarded-host", "").split(","))
    base = services_of(request).settings.base_url
    if base:
        ours.add(urlsplit(base).netloc)
    if urlsplit(origin).netloc not in ours - {None, ""}:
        raise Forbidden("this form must be sent from the opendps pages themselves")

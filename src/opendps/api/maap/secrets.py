"""``maap.secrets``: per-user secrets, encrypted at rest, JSON in every answer (reference §5).

maap-py raises a *string* on any exception in its secret calls (``TypeError``), so every
answer here, errors included, must be JSON. ``PUT …/secrets/{name}`` updates a value (the
client itself only knows delete + add, which keeps working).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from opendps.api.deps import current_user, services_of
from opendps.api.maap.common import MaapError, decode_json_body
from opendps.errors import Conflict, NotFound

router = APIRouter(include_in_schema=False)
MAX_NAME = 255
MAX_VALUE = 64 * 1024


def _string(body: dict[str, Any], key: str, limit: int) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise MaapError(400, f"{key} is required and must be a non-empty string")
    if len(value) > limit:
        raise MaapError(400, f"{key} is longer than {limit} characters")
    return value


async def _body(request: Request) -> dict[str, Any]:
    body = decode_json_body(await request.body(), "secret")
    if not isinstance(body, dict):
        raise MaapError(400, 'send {"secret_name": …, "secret_value": …}')
    return body


@router.get("/api/members/self/secrets")
def list_secrets(request: Request) -> list[dict[str, Any]]:
    services = services_of(request)
    user = current_user(request)
    return [{"secret_name": s["name"]} for s in services.secrets.list(user)]


@router.post("/api/members/self/secrets")
async def add_secret(request: Request) -> dict[str, Any]:
    services = services_of(request)
    user = current_user(request)
    body = await _body(request)
    name = _string(body, "secret_name", MAX_NAME)
    if "/" in name or not name.isprintable():
        raise MaapError(400, "secret_name must be printable and must not contain '/'")
    value = _string(body, "secret_value", MAX_VALUE)
    try:
        services.secrets.add(user, name, value)
    except Conflict:
        raise MaapError(
            400,
            f"Secret already exists with name {name}. Please delete and "
            f"re-create the secret, or update it with PUT "
            f"/api/members/self/secrets/{name}",
        ) from None
    return {"secret_name": name}


@router.get("/api/members/self/secrets/{name}")
def get_secret(name: str, request: Request) -> dict[str, Any]:
    services = services_of(request)
    user = current_user(request)
    try:
        value = services.secrets.get(user, name)
    except NotFound:
        raise MaapError(404, f"No secret exists with name {name}") from None
    return {"secret_name": name, "secret_value": value}


@router.put("/api/members/self/secrets/{name}")
async def update_secret(name: str, request: Request) -> dict[str, Any]:
    """Set the value of ``name``, creating the secret if it does not exist yet."""
    services = services_of(request)
    user = current_user(request)
    body = await _body(request)
    if body.get("secret_name") not in (None, name):
        raise MaapError(
            400, f"secret_name {body['secret_name']!r} does not match the path ({name!r})"
        )
    value = _string(body, "secret_value", MAX_VALUE)
    services.secrets.add(user, name, value, replace=True)
    return {"secret_name": name}


@router.delete("/api/members/self/secrets/{name}")
def delete_secret(name: str, request: Request) -> JSONResponse:
    services = services_of(request)
    user = current_user(request)
    try:
        services.secrets.delete(user, name)
    except NotFound:
        raise MaapError(400, f"No secret exists with name {name}") from None
    return JSONResponse({"code": 200, "message": f"Successfully deleted secret {name}"})

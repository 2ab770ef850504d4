"""The secrets page: a user's secret names; add, update, delete. A value is write-only:
it is sent once in a password field and never appears on any page afterwards."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from opendps.api.deps import services_of
from opendps.api.ui.render import check_same_origin, render, ui_user
from opendps.errors import InvalidInput, OpenDPSError

router = APIRouter(prefix="/ui", include_in_schema=False)

NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,200}$")
MAX_VALUE = 64 * 1024  # characters
NOTICES = {
    "added": "Secret saved. Its value is not shown again; jobs read it at run time.",
    "updated": "Secret updated. Its value is not shown again.",
    "deleted": "Secret deleted.",
}


def secrets_page(
    request: Request, *, name: str = "", error: str | None = None, status: int = 200
) -> HTMLResponse:
    services = services_of(request)
    user = ui_user(request)
    return render(
        request,
        "secrets.html",
        {
            "secrets": services.secrets.list(user),
            "name": name,
            "error": error,
            "notice": NOTICES.get(request.query_params.get("done", "")),
        },
        status=status,
    )


@router.get("/secrets", response_class=HTMLResponse)
def secret_list(request: Request) -> HTMLResponse:
    return secrets_page(request)


def check_secret(name: str, value: str) -> None:
    if not NAME.match(name):
        raise InvalidInput(
            f"a secret name is 1 to 200 letters, digits, '_', '-' or '.'; got {name[:40]!r}"
            if name
            else "give the secret a name"
        )
    if not value:
        raise InvalidInput(f"type the value of {name!r}")
    if len(value) > MAX_VALUE:
        raise InvalidInput(f"the value of {name!r} is longer than {MAX_VALUE} characters")


@router.post("/secrets")
async def save_secret(request: Request) -> Response:
    """Add a secret, or replace the value of an existing one (``replace=on``)."""
    check_same_origin(request)
    services = services_of(request)
    form = await request.form()
    name = str(form.get("name") or "").strip()
    value = str(form.get("value") or "")
    replace = form.get("replace") == "on"

    def save() -> None:
        user = ui_user(request)
        check_secret(name, value)
        services.secrets.add(user, name, value, replace=replace)

    try:
        await run_in_threadpool(save)
    except OpenDPSError as exc:
        if exc.status >= 500 or exc.status == 401:
            raise
        # The value is never sent back, not even to correct a typo in the name.
        return await run_in_threadpool(
            secrets_page, request, name=name, error=exc.message, status=exc.status
        )
    done = "updated" if replace else "added"
    return RedirectResponse(f"/ui/secrets?done={done}", status_code=303)


@router.post("/secrets/{name}/delete")
async def delete_secret(name: str, request: Request) -> Response:
    check_same_origin(request)
    services = services_of(request)

    def delete() -> None:
        services.secrets.delete(ui_user(request), name)

    await run_in_threadpool(delete)
    return RedirectResponse("/ui/secrets?done=deleted", status_code=303)

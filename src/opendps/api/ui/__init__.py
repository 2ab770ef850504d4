"""The web UI at ``/ui/`` (DESIGN §6): server-rendered pages over the service layer.

Pages (DESIGN §16): ``/ui/`` (queues, counts, recent jobs), ``/ui/jobs`` (tiles, filters,
sorting, keyset paging, bulk cancel/retry), ``/ui/jobs/{id}`` (timeline, failure in words,
logs, outputs, memory/CPU chart, snippets), ``/ui/processes`` (register form),
``/ui/processes/{id}`` (versions, build, submit form, CSV batch), ``/ui/batches``,
``/ui/batches/{id}``, ``/ui/queues`` and ``/ui/secrets``. A little vanilla JavaScript
(``static/ui.js``) keeps live parts fresh; without it every page still works.
Errors under ``/ui/`` are pages too, never JSON or tracebacks.

With auth on, a browser sends no token header, so ``/ui/login`` keeps the token a person
pastes in an HttpOnly, SameSite=Strict cookie that only the UI's routes read.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from opendps.api.deps import TOKEN_COOKIE, services_of
from opendps.api.problems import register_error_shape
from opendps.api.ui import batches, job_page, jobs, processes, queues, secrets
from opendps.api.ui.render import (
    STATIC_DIR,
    check_same_origin,
    render,
)
from opendps.errors import OpenDPSError, Unauthorized

PREFIX = "/ui/"
TITLES = {
    400: "Bad request",
    401: "Sign in",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    415: "Unsupported media type",
    422: "Bad request",
}

session = APIRouter(prefix="/ui", include_in_schema=False)


def error_page(request: Request, status: int, message: str) -> Response:
    """Any error under /ui/ as a page; 401 asks for a token."""
    if status == 401:
        return login_page(request, error=message, status=401)
    title = TITLES.get(status, "Something went wrong" if status >= 500 else "Error")
    return render(
        request, "error.html", {"status": status, "title": title, "message": message}, status
    )


def safe_target(target: str) -> str:
    """Where to go after signing in: a UI page of this server, nothing else."""
    return target if target.startswith("/ui/") and "\\" not in target else "/ui/"


def login_page(
    request: Request,
    *,
    error: str | None = None,
    status: int = 200,
    target: str | None = None,
) -> HTMLResponse:
    if target is None:
        if request.url.path == "/ui/login":
            target = request.query_params.get("next") or "/ui/"
        elif request.method == "GET":  # come back to the page that asked for a token
            query = request.url.query
            target = request.url.path + (f"?{query}" if query else "")
        else:
            target = "/ui/"
    context = {"error": error, "next": safe_target(target)}
    return render(request, "login.html", context, status)


@session.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> HTMLResponse:
    return login_page(request)


@session.post("/login")
async def login(request: Request) -> Response:
    check_same_origin(request)
    form = await request.form()
    token = str(form.get("token") or "").strip()
    target = safe_target(str(form.get("next") or "/ui/"))
    services = services_of(request)
    try:
        if not token:
            raise Unauthorized("paste your API token")
        user = await run_in_threadpool(services.identity.authenticate, token)
    except OpenDPSError as exc:
        return login_page(request, error=exc.message, status=exc.status, target=target)
    request.state.user = user
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        TOKEN_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/ui",
    )
    return response


@session.post("/logout")
def logout(request: Request) -> Response:
    check_same_origin(request)
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(TOKEN_COOKIE, path="/ui")
    return response


def install(app: FastAPI) -> None:
    """Add the pages, their static files, and HTML error pages for ``/ui/``."""
    routers = (session, jobs.router, job_page.router, processes.router, batches.router)
    for router in (*routers, queues.router, secrets.router):
        app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="ui-static")
    register_error_shape(app, PREFIX, error_page)

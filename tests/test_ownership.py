"""One ownership rule at every door (DESIGN §11), route by route, with auth on.

For every route of every dialect (OGC, MAAP OGC-JSON, MAAP WPS-XML, batches, web UI,
secrets) that touches a user's object: the owner gets 2xx; another user gets exactly the
answer of a random id (same status, same body once the id is blanked out); an admin gets
what the owner gets; a request without a token gets 401. Then the listings of each dialect,
and the shared catalogue of algorithms (only owner or admin may replace or delete, 403 for
anyone else, and the algorithm, its owner and its build stay as they were).

The app runs in-process; the local executor runs once, while the fixture builds the world,
so that alice has a finished job and a finished batch; later jobs stay queued.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from opendps.api.app import create_app
from opendps.executors.local import LocalExecutor
from opendps.models import JobStatus
from opendps.service.context import Services
from opendps.service.jobs import Submission
from opendps.service.queries import JobQuery
from tests.support.dps import fast_settings, wait_for_job

pytestmark = pytest.mark.timeout(300)

USERS = ("alice", "bob", "root")  # owner, another user, an admin
MAAP_ALGORITHM = {
    "algorithm_name": "owned",
    "algorithm_version": "main",
    "algorithm_description": "alice's algorithm",
    "repository_url": "https://example.invalid/org/owned_repo.git",
    "run_command": "owned_repo/run.sh",
    "inputs": {"file": [], "positional": [{"name": "size", "default": "1"}], "config": []},
}
OGC_YAML = """\
algorithm_name: owned
algorithm_version: main
algorithm_description: {description}
repository_url: https://example.invalid/org/owned_repo.git
run_command: owned_repo/run.sh
inputs: {{}}
"""


@dataclass
class World:
    client: TestClient
    services: Services
    headers: dict[str, dict[str, str]]  # user -> Authorization header
    job: str  # alice's finished (successful) job
    batch: str  # alice's finished batch
    algorithm: int  # alice's algorithm's numeric id (MAAP processID), "owned:main"

    def fresh_job(self) -> str:
        """A queued job of alice's (no executor runs now, so it stays queued)."""
        job = self.services.jobs.submit(Submission("hello-world", {"name": "x"}), owner="alice")
        return job.id

    def fresh_secret(self) -> str:
        name = f"tmp-{uuid.uuid4().hex[:8]}"
        self.services.secrets.add("alice", name, "value")
        return name


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    settings = fast_settings(tmp_path_factory.mktemp("ownership") / "dps", auth=True)
    app = create_app(settings, run_jobs=False)
    services: Services = app.state.services
    tokens = {name: services.identity.create_user(name, is_admin=name == "root") for name in USERS}
    headers = {name: {"Authorization": f"Bearer {token}"} for name, token in tokens.items()}
    with TestClient(app, raise_server_exceptions=False) as client:
        alice = headers["alice"]
        submitted = client.post(
            "/processes/hello-world/execution",
            json={"inputs": {"name": "Alice"}},
            headers={**alice, "Prefer": "respond-async"},
        )
        assert submitted.status_code == 201, submitted.text
        batch = client.post(
            "/batches",
            json={"process": "hello-world", "jobs": [{"inputs": {"name": "a"}}] * 2},
            headers=alice,
        )
        assert batch.status_code == 201, batch.text
        executor = LocalExecutor(services, supervisors="process")
        executor.start()
        try:
            for job_id in [submitted.json()["jobID"], *batch.json()["jobIDs"]]:
                assert wait_for_job(services, job_id, timeout=120).status == JobStatus.SUCCESSFUL
        finally:
            executor.stop()
        registered = client.post("/api/mas/algorithm", json=MAAP_ALGORITHM, headers=alice)
        assert registered.status_code == 200, registered.text
        secret = client.post(
            "/api/members/self/secrets",
            json={"secret_name": "s1", "secret_value": "alice-value"},
            headers=alice,
        )
        assert secret.status_code == 200, secret.text
        yield World(
            client=client,
            services=services,
            headers=headers,
            job=submitted.json()["jobID"],
            batch=batch.json()["batchID"],
            algorithm=registered.json()["message"]["processID"],
        )


# -- every route that touches a user's object -------------------------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # with {job}, {batch} or {secret}
    ok: int  # the owner's (and an admin's) status
    changes: bool = False  # acts on a fresh object of alice's, and "another user" must not
    body: Any = None
    admin_ok: int | None = None  # when an admin is answered differently (self-only routes)

    @property
    def kind(self) -> str:
        return "secret" if "{secret}" in self.path else "batch" if "{batch}" in self.path else "job"


ROUTES = {
    # OGC API - Processes and this project's extensions
    "ogc-status": Route("GET", "/jobs/{job}", 200),
    "ogc-status-wait": Route("GET", "/jobs/{job}?wait=1", 200),
    "ogc-results": Route("GET", "/jobs/{job}/results", 200),
    "ogc-result-output": Route("GET", "/jobs/{job}/results/greeting", 200),
    "ogc-outputs": Route("GET", "/jobs/{job}/outputs", 200),
    "ogc-output-file": Route("GET", "/jobs/{job}/outputs/_stdout.txt", 200),
    "ogc-logs": Route("GET", "/jobs/{job}/logs", 200),
    "ogc-logs-follow": Route("GET", "/jobs/{job}/logs?follow=true", 200),
    "ogc-metrics": Route("GET", "/jobs/{job}/metrics", 200),
    "ogc-events": Route("GET", "/jobs/{job}/events", 200),
    "ogc-retry": Route("POST", "/jobs/{job}/retry", 201),
    "ogc-dismiss": Route("DELETE", "/jobs/{job}", 200, changes=True),
    # MAAP OGC-JSON (maap-py 5.x)
    "maap-status": Route("GET", "/api/ogc/jobs/{job}", 200),
    "maap-results": Route("GET", "/api/ogc/jobs/{job}/results", 200),
    "maap-metrics": Route("GET", "/api/ogc/jobs/{job}/metrics", 200),
    "maap-cancel": Route("DELETE", "/api/ogc/jobs/{job}", 202, changes=True),
    # MAAP WPS-XML (maap-py 4.x)
    "wps-status": Route("GET", "/api/dps/job/{job}/status", 200),
    "wps-metrics": Route("GET", "/api/dps/job/{job}/metrics", 200),
    "wps-result": Route("GET", "/api/dps/job/{job}", 200),
    "wps-cancel": Route("POST", "/api/dps/job/cancel/{job}", 202, changes=True),
    # batches
    "batch-status": Route("GET", "/batches/{batch}", 200),
    "batch-retry": Route("POST", "/batches/{batch}/retry", 200),
    "batch-cancel": Route("DELETE", "/batches/{batch}", 200, changes=True),
    # web UI
    "ui-job": Route("GET", "/ui/jobs/{job}", 200),
    "ui-live-job": Route("GET", "/ui/live/jobs/{job}", 200),
    "ui-output-file": Route("GET", "/ui/jobs/{job}/outputs/_stdout.txt", 200),
    "ui-cancel": Route("POST", "/ui/jobs/{job}/cancel", 303, changes=True),
    "ui-retry": Route("POST", "/ui/jobs/{job}/retry", 303),
    "ui-batch": Route("GET", "/ui/batches/{batch}", 200),
    "ui-live-batch": Route("GET", "/ui/live/batches/{batch}", 200),
    "ui-batch-cancel": Route("POST", "/ui/batches/{batch}/cancel", 303, changes=True),
    # alice's batch has nothing to retry: the owner gets the batch page saying so
    "ui-batch-retry": Route("POST", "/ui/batches/{batch}/retry", 200),
    # the caller's own secrets, as in MAAP's: an admin has no secret of that name
    "ui-secret-delete": Route(
        "POST", "/ui/secrets/{secret}/delete", 303, changes=True, admin_ok=404
    ),
    # secrets (MAAP): the caller's own, so an admin is answered as for any other user
    "secret-get": Route("GET", "/api/members/self/secrets/{secret}", 200, admin_ok=404),
    "secret-delete": Route(
        "DELETE", "/api/members/self/secrets/{secret}", 200, changes=True, admin_ok=400
    ),
}


def call(world: World, route: Route, target: str, user: str | None) -> Any:
    path = route.path.format(job=target, batch=target, secret=target)
    headers = world.headers[user] if user else {}
    return world.client.request(
        route.method, path, headers=headers, json=route.body, follow_redirects=False
    )


def target_of(world: World, route: Route, fresh: bool) -> str:
    if route.kind == "secret":
        return world.fresh_secret() if fresh else "s1"
    if route.kind == "batch":
        if fresh:
            submitted = world.services.batches.submit(
                [Submission("hello-world", {"name": "b"})], user="alice"
            )
            return submitted.batch.id
        return world.batch
    return world.fresh_job() if fresh else world.job


def random_target(route: Route) -> str:
    return f"zz{uuid.uuid4().hex[:10]}" if route.kind == "secret" else str(uuid.uuid4())


def blanked(response: Any, *ids: str) -> tuple[int, str, str]:
    text = response.text
    for value in ids:
        text = text.replace(value, "<id>")
    return response.status_code, response.headers.get("content-type", ""), text


@pytest.mark.parametrize("name", list(ROUTES))
def test_the_owner_is_answered(world: World, name: str) -> None:
    route = ROUTES[name]
    response = call(world, route, target_of(world, route, route.changes), "alice")
    assert response.status_code == route.ok, response.text


@pytest.mark.parametrize("name", list(ROUTES))
def test_an_admin_is_answered_as_the_owner(world: World, name: str) -> None:
    route = ROUTES[name]
    response = call(world, route, target_of(world, route, route.changes), "root")
    assert response.status_code == (route.admin_ok or route.ok), response.text


@pytest.mark.parametrize("name", list(ROUTES))
def test_another_user_is_answered_as_for_a_random_id(world: World, name: str) -> None:
    route = ROUTES[name]
    target = target_of(world, route, route.changes)
    before = _state(world, route, target)
    other = call(world, route, target, "bob")
    unknown = random_target(route)
    missing = call(world, route, unknown, "bob")
    assert other.status_code in (400, 404), other.text
    assert blanked(other, target) == blanked(missing, unknown)
    assert _state(world, route, target) == before  # nothing happened to alice's object


@pytest.mark.parametrize("name", list(ROUTES))
def test_no_token_is_401(world: World, name: str) -> None:
    route = ROUTES[name]
    target = target_of(world, route, route.changes)
    before = _state(world, route, target)
    response = call(world, route, target, None)
    assert response.status_code == 401, response.text
    if route.path.startswith("/ui/") and "/live/" not in route.path:
        assert 'action="/ui/login"' in response.text  # a person is asked to sign in
    assert _state(world, route, target) == before


def _state(world: World, route: Route, target: str) -> Any:
    if route.kind == "secret":
        return world.services.secrets.get("alice", target)
    if route.kind == "batch":
        return world.services.batches.get(target, user="alice").counts
    job = world.services.jobs.get(target, "alice")
    return job.status, job.cancel_requested


@pytest.mark.parametrize(
    "path",
    ["/", "/conformance", "/openapi.json", "/docs", "/healthz", "/api/environment/config"],
)
def test_public_routes_need_no_token(world: World, path: str) -> None:
    assert world.client.get(path).status_code == 200


def test_sign_in_page_and_static_files_need_no_token(world: World) -> None:
    assert world.client.get("/ui/login").status_code == 200
    assert world.client.get("/ui/static/ui.css").status_code == 200
    assert world.client.get("/ui/jobs").status_code == 401


# -- the two holes of issue #8 --------------------------------------------------------------


def test_batches_need_a_token_and_belong_to_their_owner(world: World) -> None:
    """Anonymous GET/DELETE/retry of /batches/{id} dismissed another user's running jobs."""
    submitted = world.services.batches.submit(
        [Submission("hello-world", {"name": str(n)}) for n in range(3)], user="alice"
    )
    batch = submitted.batch.id
    for method, path in (
        ("GET", f"/batches/{batch}"),
        ("DELETE", f"/batches/{batch}"),
        ("POST", f"/batches/{batch}/retry"),
    ):
        assert world.client.request(method, path).status_code == 401, path
        assert world.client.request(method, path, headers=world.headers["bob"]).status_code == 404
    counts = world.services.batches.get(batch, user="alice").counts
    assert counts["accepted"] == 3 and counts["dismissed"] == 0


def _algorithm(world: World) -> tuple[str, str, int | None, str | None]:
    algorithm = world.services.algorithms.get("owned:main")
    build = algorithm.build.id if algorithm.build else None
    return algorithm.owner, json.dumps(algorithm.spec, sort_keys=True), build, algorithm.package


def test_maap_register_cannot_take_over_another_users_algorithm(world: World) -> None:
    """POST /api/mas/algorithm with another user's name+version replaced their algorithm and
    made the caller its owner; their next job ran the caller's code."""
    before = _algorithm(world)
    hijack = {**MAAP_ALGORITHM, "run_command": "owned_repo/steal.sh"}
    response = world.client.post("/api/mas/algorithm", json=hijack, headers=world.headers["bob"])
    assert response.status_code == 403, response.text
    assert "alice" in response.json()["message"]
    assert _algorithm(world) == before


# -- the shared catalogue: who may replace, re-register, delete ---------------------------------


def _ogc_yaml(description: str, **headers: str) -> dict[str, Any]:
    return {
        "content": OGC_YAML.format(description=description),
        "headers": {"Content-Type": "application/yaml", **headers},
    }


CHANGES: dict[str, Callable[[World], dict[str, Any]]] = {
    "ogc-put": lambda w: {"method": "PUT", "url": "/processes/owned:main", **_ogc_yaml("b")},
    "ogc-post-existing": lambda w: {"method": "POST", "url": "/processes", **_ogc_yaml("b")},
    "ogc-delete": lambda w: {"method": "DELETE", "url": "/processes/owned:main"},
    "mas-register": lambda w: {
        "method": "POST",
        "url": "/api/mas/algorithm",
        "json": {**MAAP_ALGORITHM, "algorithm_description": "b"},
    },
    "mas-delete": lambda w: {"method": "DELETE", "url": "/api/mas/algorithm/owned:main"},
    "maap-deploy-existing": lambda w: {
        "method": "POST",
        "url": "/api/ogc/processes",
        "json": {"cwlRawText": OGC_YAML.format(description="b")},
    },
    "maap-put": lambda w: {
        "method": "PUT",
        "url": f"/api/ogc/processes/{w.algorithm}",
        "json": {"cwlRawText": OGC_YAML.format(description="b")},
    },
    "maap-delete": lambda w: {"method": "DELETE", "url": f"/api/ogc/processes/{w.algorithm}"},
    "ui-replace": lambda w: {
        "method": "POST",
        "url": "/ui/processes",
        "data": {"package": OGC_YAML.format(description="b"), "replace": "on"},
    },
}


@pytest.mark.parametrize("name", list(CHANGES))
def test_only_owner_or_admin_may_change_an_algorithm(world: World, name: str) -> None:
    before = _algorithm(world)
    request = CHANGES[name](world)
    headers = {**request.pop("headers", {}), **world.headers["bob"]}
    response = world.client.request(**request, headers=headers, follow_redirects=False)
    assert response.status_code == 403, response.text
    assert _algorithm(world) == before
    anonymous = world.client.request(
        **request, headers=request.get("headers", {}), follow_redirects=False
    )
    assert anonymous.status_code == 401
    assert _algorithm(world) == before


def test_an_admin_may_replace_and_the_owner_stays(world: World) -> None:
    response = world.client.put(
        "/processes/owned:main",
        **_ogc_yaml(
            "replaced by an admin", Prefer="return=representation", **world.headers["root"]
        ),
    )
    assert response.status_code == 200, response.text
    algorithm = world.services.algorithms.get("owned:main")
    assert algorithm.owner == "alice" and algorithm.spec["description"] == "replaced by an admin"
    again = world.client.post(
        "/api/mas/algorithm",
        json={**MAAP_ALGORITHM, "algorithm_description": "alice again"},
        headers=world.headers["alice"],
    )
    assert again.status_code == 200, again.text
    assert world.services.algorithms.get("owned:main").owner == "alice"


def test_ogc_post_of_an_existing_id_by_its_owner_is_409(world: World) -> None:
    response = world.client.post("/processes", **_ogc_yaml("again", **world.headers["alice"]))
    assert response.status_code == 409, response.text


def test_another_users_secret_is_untouched_by_put(world: World) -> None:
    bob = world.headers["bob"]
    response = world.client.put(
        "/api/members/self/secrets/s1", json={"secret_value": "bob-value"}, headers=bob
    )
    assert response.status_code == 200  # bob's own secret named s1
    assert world.services.secrets.get("alice", "s1") == "alice-value"
    assert world.services.secrets.get("bob", "s1") == "bob-value"
    world.services.secrets.delete("bob", "s1")


# -- listings: the same scope in every dialect ------------------------------------------------


def _listings(world: World, user: str) -> dict[str, bool]:
    """Whether each dialect's job listing shows ``user`` alice's finished job (or, for the
    batch filter, her batch's jobs)."""
    client, headers = world.client, world.headers[user]
    ogc = client.get("/jobs?limit=1000", headers=headers).json()
    maap = client.get("/api/ogc/jobs?limit=1000", headers=headers).json()
    wps = client.get("/api/dps/job/list?page_size=1000", headers=headers).json()
    named = client.get("/api/dps/job/alice/list?page_size=1000", headers=headers).json()
    page = client.get("/ui/jobs?limit=250", headers=headers)
    live = client.get(f"/ui/live/jobs?id={world.job}", headers=headers).json()
    batch = client.get(f"/jobs?batch={world.batch}", headers=headers).json()
    ui_batches = client.get("/ui/batches", headers=headers)
    ui_batch_jobs = client.get(f"/ui/jobs?batch={world.batch}", headers=headers)
    batch_jobs = world.services.job_store.batch_job_ids(world.batch, list(JobStatus))
    assert len(batch_jobs) == 2
    assert page.status_code == ui_batches.status_code == ui_batch_jobs.status_code == 200
    return {
        "ogc": world.job in {j["jobID"] for j in ogc["jobs"]},
        "maap": world.job in {j["jobID"] for j in maap["jobs"]},
        "wps": world.job in {next(iter(j)) for j in wps["jobs"]},
        "wps-named": world.job in {next(iter(j)) for j in named["jobs"]},
        "ui": world.job in page.text,
        "ui-live": world.job in live["jobs"],
        "ogc-batch": batch["numberMatched"] == 2,
        "ui-batches": world.batch in ui_batches.text,
        "ui-batch-filter": all(job_id in ui_batch_jobs.text for job_id in batch_jobs),
    }


def test_listings_show_alices_jobs_to_her_and_admins_and_to_nobody_else(world: World) -> None:
    for user, expected in (("alice", True), ("root", True), ("bob", False)):
        assert _listings(world, user) == dict.fromkeys(_listings(world, user), expected), user


def test_numbers_matched_agree_across_dialects(world: World) -> None:
    counts = {}
    for user in USERS:
        headers = world.headers[user]
        ogc = world.client.get("/jobs", headers=headers).json()["numberMatched"]
        maap = world.client.get("/api/ogc/jobs", headers=headers).json()["numberMatched"]
        wps = world.client.get("/api/dps/job/list", headers=headers).json()["numberMatched"]
        assert ogc == maap == wps, user
        counts[user] = ogc
    assert counts["bob"] == 0 and 0 < counts["alice"] <= counts["root"]


def test_batch_listing_is_scoped(world: World) -> None:
    def batches(user: str) -> set[str]:
        answer = world.client.get("/batches?limit=1000", headers=world.headers[user]).json()
        return {b["batchID"] for b in answer["batches"]}

    assert world.batch in batches("alice") and world.batch in batches("root")
    assert world.batch not in batches("bob")


def test_dashboard_counts_only_what_the_user_may_see(world: World) -> None:
    def total(user: str) -> int:
        page = world.client.get("/ui/", headers=world.headers[user]).text
        found = re.search(r'card-value">(\d+)</span><span class="card-label">jobs<', page)
        assert found, page
        return int(found.group(1))

    mine = world.client.get("/jobs", headers=world.headers["alice"]).json()["numberMatched"]
    assert total("bob") == 0 and total("alice") == mine > 0
    assert total("root") >= mine


def test_live_counts_count_only_what_the_user_may_see(world: World) -> None:
    def live(user: str) -> dict[str, Any]:
        answer = world.client.get("/ui/live/jobs?counts=1&top=0", headers=world.headers[user])
        assert answer.status_code == 200
        return answer.json()

    mine = world.client.get("/jobs", headers=world.headers["alice"]).json()["numberMatched"]
    alice, bob, root = live("alice"), live("bob"), live("root")
    assert sum(alice["counts"].values()) == alice["newer"] == mine > 0
    assert sum(bob["counts"].values()) == bob["newer"] == 0
    assert sum(root["counts"].values()) >= mine and root["newer"] >= mine


def test_queues_page_explains_only_the_users_own_waiting_jobs(world: World) -> None:
    waiting = {world.fresh_job() for _ in range(2)} | {
        j.id
        for j in world.services.jobs.list_jobs(
            JobQuery(statuses=(JobStatus.ACCEPTED,), limit=1000), "alice"
        ).items
    }

    def shown(user: str) -> set[str]:
        page = world.client.get("/ui/queues", headers=world.headers[user])
        assert page.status_code == 200
        return {job_id for job_id in waiting if job_id in page.text}

    assert shown("alice") and shown("root")
    assert shown("bob") == set()


def test_secrets_page_lists_only_the_callers_own(world: World) -> None:
    def names(user: str) -> str:
        page = world.client.get("/ui/secrets", headers=world.headers[user])
        assert page.status_code == 200
        return page.text

    assert "/ui/secrets/s1/delete" in names("alice")
    assert "/ui/secrets/s1/delete" not in names("bob")
    assert "/ui/secrets/s1/delete" not in names("root")  # secrets are not shared, not even
    assert world.services.secrets.get("alice", "s1") == "alice-value"


def test_removed_users_token_stops_working(world: World) -> None:
    token, _ = world.services.identity.set_user("carol")
    carol = {"Authorization": f"Bearer {token}"}
    assert world.client.get("/jobs", headers=carol).status_code == 200
    job = world.services.jobs.submit(Submission("hello-world", {"name": "c"}), owner="carol")
    job_token = {"Authorization": f"Bearer {world.services.identity.job_token(job.id)}"}
    assert world.client.get("/api/members/self", headers=job_token).json()["username"] == "carol"
    world.services.identity.remove_user("carol")
    assert world.client.get("/jobs", headers=carol).status_code == 401
    assert world.client.get("/api/members/self", headers=job_token).status_code == 401


def test_every_route_but_the_public_ones_needs_a_token(world: World) -> None:
    """Every route of the app, the dialects' and any added later, with made-up path values
    and no token: 401 before the route looks at anything."""
    from fastapi.routing import APIRoute

    from opendps.api.deps import PUBLIC_PATHS, PUBLIC_PREFIXES

    def api_routes(routes: list[Any]) -> Iterator[APIRoute]:
        for route in routes:
            if isinstance(route, APIRoute):
                yield route
            elif hasattr(route, "original_router"):  # FastAPI >= 0.16x: an included router
                yield from api_routes(route.original_router.routes)

    answered = []
    for route in api_routes(world.client.app.routes):
        path = re.sub(r"\{[^}]+\}", "x1", route.path)
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            continue  # answered without a token (test_public_routes_need_no_token)
        for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
            status = world.client.request(method, path, follow_redirects=False).status_code
            answered.append((method, route.path, status))
            assert status == 401, (method, route.path, status)
    assert len(answered) > 60  # the dialects' routes were all there

"""Bad requests are 4xx, never 500, and the server never opens what a user names
(issue #8 items 6 and 7; DESIGN §11). Each test is one of the reproductions."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from opendps.api.app import create_app
from opendps.errors import InvalidSpec, LocalizeError
from opendps.net import safety
from opendps.net.safety import UrlPolicy
from opendps.runner.localize import localize_inputs
from opendps.service.context import Services
from opendps.service.jobs import Submission, output_prefix
from opendps.service.queries import ProcessQuery
from opendps.settings import Settings
from opendps.yamltext import load_yaml
from tests.support.dps import algorithm_yaml, fast_settings
from tests.support.http_server import HttpFiles

AUTH_ON = {"auth": True}


def client_for(tmp_path: Path, **settings: Any) -> TestClient:
    app = create_app(fast_settings(tmp_path / "dps", **settings), run_jobs=False)
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[TestClient]:
    with client_for(tmp_path) as client:
        yield client


def services_of(client: TestClient) -> Services:
    return client.app.state.services  # type: ignore[no-any-return]


def cursor(seq: object) -> str:
    return base64.urlsafe_b64encode(json.dumps({"s": seq}).encode()).decode().rstrip("=")


DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"inputs": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5001


# -- item 6: bad input is a 4xx ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/processes", "application/yaml"),
        ("/processes", "application/json"),
        ("/processes/echo/execution", "application/json"),
        ("/batches", "application/json"),
        ("/api/ogc/processes", "application/json"),
        ("/api/ogc/processes/echo/execution", "application/json"),
        ("/api/mas/algorithm", "application/json"),
        ("/api/members/self/secrets", "application/json"),
    ],
)
@pytest.mark.parametrize(
    "body", [b"\xff\xfe{not utf-8", DEEP, DEEP_OBJECT], ids=["utf8", "deep", "deep-object"]
)
def test_bad_bytes_and_deep_nesting_are_400(
    api: TestClient, path: str, content_type: str, body: bytes
) -> None:
    response = api.post(path, content=body, headers={"Content-Type": content_type})
    assert 400 <= response.status_code < 500, (path, response.status_code, response.text[:300])
    assert "internal error" not in response.text


@pytest.mark.parametrize("priority", ['"abc"', "null", "1e400", "true", "5.7", "10", "-1"])
def test_batch_and_execution_priorities_that_are_not_0_to_9_are_400(
    api: TestClient, priority: str
) -> None:
    job = '{"inputs": {"name": "x"}}'
    batch = f'{{"process": "hello-world", "jobs": [{job}], "priority": {priority}}}'
    in_job = f'{{"process": "hello-world", "jobs": [{job[:-1]}, "priority": {priority}}}]}}'
    execute = f'{{"inputs": {{"name": "x"}}, "priority": {priority}}}'
    for path, body in (
        ("/batches", batch),
        ("/batches", in_job),
        ("/processes/hello-world/execution", execute),
        ("/api/ogc/processes/hello-world/execution", execute),
    ):
        response = api.post(path, content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, (path, body, response.text)
        assert "priority" in response.text
    assert (
        services_of(api)
        .job_store.list_jobs(
            __import__("opendps.store.jobstore", fromlist=["JobFilters"]).JobFilters(), limit=10
        )
        .number_matched
        == 0
    )


@pytest.mark.parametrize("path", ["/jobs", "/processes", "/ui/jobs", "/ui/processes"])
@pytest.mark.parametrize("seq", [10**23, -1, "x", 1.5, None])
def test_forged_cursors_are_400(api: TestClient, path: str, seq: object) -> None:
    response = api.get(path, params={"next": cursor(seq)})
    assert response.status_code == 400, (path, seq, response.text[:200])


@pytest.mark.parametrize("value", [10**23, [1], {"a": 1}, None, True])
def test_forged_sort_values_in_ui_cursors_are_400(api: TestClient, value: object) -> None:
    """A sorted listing's cursor carries the last row's sort value, compared in SQL."""
    forged = json.dumps({"s": 5, "v": value}).encode()
    token = base64.urlsafe_b64encode(forged).decode().rstrip("=")
    response = api.get("/ui/jobs", params={"sort": "-priority", "next": token})
    assert response.status_code == 400, (value, response.text[:200])


@pytest.mark.parametrize("path", ["/api/ogc/jobs", "/api/dps/job/list"])
def test_maap_offsets_beyond_64_bits_are_400(api: TestClient, path: str) -> None:
    response = api.get(path, params={"offset": str(10**23)})
    assert response.status_code == 400 and "offset" in response.text


def test_bodies_over_max_request_bytes_are_413_batches_have_their_own_limit(
    tmp_path: Path,
) -> None:
    with client_for(tmp_path, max_request_bytes=1000, max_batch_request_bytes=100_000) as api:
        big = b"x" * 2000
        response = api.post("/processes", content=big, headers={"Content-Type": "application/yaml"})
        assert response.status_code == 413 and "1000 bytes" in response.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it is read
            for _ in range(4):
                yield b"y" * 500

        streamed = api.post(
            "/processes/echo/execution",
            content=chunks(),
            headers={"Content-Type": "application/json"},
        )
        assert streamed.status_code == 413
        batch = api.post("/batches", content=b"[" + b" " * 5000 + b"]")
        assert batch.status_code == 400  # under the batch limit: read, then refused as a batch


ALIAS_BOMB = """
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
algorithm_name: bomb
algorithm_version: main
repository_url: https://example.org/r.git
run_command: r/run.sh
"""


def test_yaml_with_anchors_and_aliases_is_refused_and_nothing_is_stored(api: TestClient) -> None:
    for path in ("/processes", "/api/ogc/processes", "/api/mas/algorithm"):
        response = api.post(path, content=ALIAS_BOMB, headers={"Content-Type": "application/yaml"})
        assert response.status_code == 400, (path, response.text)
        assert "anchors or aliases" in response.text
    listing = services_of(api).algorithms.list_processes(ProcessQuery(), "anonymous")
    assert listing.number_matched == 2  # the two built-ins


def test_registrations_over_the_size_cap_are_refused(tmp_path: Path) -> None:
    with client_for(tmp_path, max_registration_bytes=2000) as api:
        padded = algorithm_yaml("https://example.org/r.git") + "#" * 3000 + "\n"
        for path in ("/processes", "/api/ogc/processes", "/api/mas/algorithm"):
            response = api.post(path, content=padded, headers={"Content-Type": "application/yaml"})
            assert response.status_code == 400 and "2000" in response.text, path


# -- item 7: the server never opens what a user names -------------------------------------------


def test_registration_hrefs_are_never_local_paths(api: TestClient) -> None:
    database = services_of(api).settings.data_dir / "dps.db"
    assert database.exists()
    for href in (str(database), f"file://{database}"):
        package = {"executionUnit": {"href": href}}
        for path in ("/processes", "/api/ogc/processes"):
            ctype = "application/ogcapppkg+json" if path == "/processes" else "application/json"
            response = api.post(path, json=package, headers={"Content-Type": ctype})
            assert response.status_code == 400, (path, response.text)
            assert "http" in response.text and "SQLite" not in response.text


def test_a_failed_parse_never_echoes_the_content(api: TestClient, http_files: HttpFiles) -> None:
    broken = 'db_password: "hunter2-secret"\n  nested: [oops\n'
    http_files.add("broken.cwl", broken.encode())
    response = api.post("/processes", content=broken, headers={"Content-Type": "application/yaml"})
    assert response.status_code == 400 and "line 2" in response.text
    assert "hunter2" not in response.text
    fetched = api.post(
        "/api/ogc/processes", json={"executionUnit": {"href": http_files.url("broken.cwl")}}
    )
    assert fetched.status_code == 400 and "hunter2" not in fetched.text
    with pytest.raises(InvalidSpec) as caught:
        load_yaml(broken, "registration")
    assert "hunter2" not in caught.value.message


def test_logs_that_a_job_replaced_by_links_or_fifos_are_not_opened(api: TestClient) -> None:
    services = services_of(api)
    job = services.jobs.submit(Submission("hello-world", {"name": "x"}), owner="anonymous")
    work = services.settings.jobs_dir / job.id
    work.mkdir(parents=True)
    database = services.settings.data_dir / "dps.db"
    (work / "_stdout.txt").symlink_to(os.path.relpath(database, work))
    os.mkfifo(work / "_stderr.txt")  # a read would block the server forever
    response = api.get(f"/jobs/{job.id}/logs")
    assert response.status_code == 200
    assert response.json() == {"stdout": "", "stderr": ""}
    (work / "_stdout.txt").unlink()
    (work / "_stdout.txt").write_text("plain log\n")
    assert api.get(f"/jobs/{job.id}/logs").json()["stdout"] == "plain log\n"


def test_outputs_under_ui_are_attachments_that_cannot_run_script(
    api: TestClient, tmp_path: Path
) -> None:
    services = services_of(api)
    job = services.jobs.submit(Submission("hello-world", {"name": "x"}), owner="anonymous")
    staged = tmp_path / "staged"
    staged.mkdir()
    (staged / "page.html").write_text("<script>fetch('/ui/secrets')</script>")
    services.storage.put_dir(staged, output_prefix(job))
    response = api.get(f"/ui/jobs/{job.id}/outputs/page.html")
    assert response.status_code == 200
    assert response.headers["content-disposition"].startswith("attachment;")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"] == "sandbox"
    api_response = api.get(f"/jobs/{job.id}/outputs/page.html")
    assert api_response.headers["content-security-policy"] == "sandbox"


TOKEN = "ghp_secrettoken123"


def test_repository_url_credentials_are_redacted_everywhere(api: TestClient) -> None:
    url = f"http://user:{TOKEN}@127.0.0.1:9/org/demo.git"  # port 9: refused at once
    yaml_text = algorithm_yaml(url, name="creds")
    assert (
        api.post(
            "/processes", content=yaml_text, headers={"Content-Type": "application/yaml"}
        ).status_code
        == 201
    )
    services = services_of(api)
    for path in (
        "/processes/creds",
        "/processes/creds/package",
        "/api/ogc/processes/creds:main",
        "/api/ogc/processes/creds:main/package",
        "/ui/processes/creds:main",
    ):
        response = api.get(path)
        assert response.status_code == 200, path
        assert TOKEN not in response.text, path
    algorithm = services.algorithms.get("creds")
    assert algorithm.build is not None
    services.algorithms.run_build(algorithm.build)  # the clone fails: the URL is in git's errors
    failed = services.algorithms.get("creds").build
    assert failed is not None and failed.message and TOKEN not in failed.message
    log = api.get("/processes/creds/build/log").text
    assert "could not clone" in log and TOKEN not in log


def test_local_repositories_need_the_operators_consent_with_auth_on(
    tmp_path: Path, make_algorithm_repo: Callable[..., Path]
) -> None:
    repo = make_algorithm_repo({"run.sh": "true\n"})
    for allowed, expected in ((None, 400), (True, 201)):
        data = tmp_path / str(allowed)
        with client_for(data, auth=True, allow_local_repositories=allowed) as api:
            token = services_of(api).identity.create_user("alice")
            for url in (str(repo), f"file://{repo}"):
                response = api.post(
                    "/processes",
                    content=algorithm_yaml(url, version=f"v{len(url)}"),
                    headers={
                        "Content-Type": "application/yaml",
                        "Authorization": f"Bearer {token}",
                    },
                )
                assert response.status_code == expected, response.text
                if expected == 400:
                    assert "local repository" in response.text


def test_private_address_defaults_follow_auth() -> None:
    assert Settings(auth=False).private_urls_allowed
    assert not Settings(auth=True).private_urls_allowed
    assert Settings(auth=True, allow_private_urls=True).private_urls_allowed
    assert not Settings(auth=True).local_repositories_allowed


def test_with_auth_on_callbacks_and_hrefs_to_loopback_are_refused(
    tmp_path: Path, http_files: HttpFiles
) -> None:
    http_files.add("p.cwl", b"cwlVersion: v1.2\nclass: CommandLineTool\n")
    with client_for(tmp_path, auth=True) as api:
        token = services_of(api).identity.create_user("alice")
        headers = {"Authorization": f"Bearer {token}"}
        callback = api.post(
            "/processes/hello-world/execution",
            json={"inputs": {"name": "x"}, "subscriber": {"successUri": http_files.url("cb")}},
            headers=headers,
        )
        assert callback.status_code == 400 and "subscriber.successUri" in callback.text
        href = api.post(
            "/api/ogc/processes",
            json={"executionUnit": {"href": http_files.url("p.cwl")}},
            headers=headers,
        )
        assert href.status_code == 400 and "private address" in href.text
    assert http_files.requests("p.cwl") == 0


@pytest.fixture
def internet_stand_in(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[HttpFiles]:
    """A server on 127.0.0.2 that the URL policy treats as a public host. A stand-in
    (not a mock of the code under test): no public address can be reached from a test,
    so this one loopback address plays the Internet; every other stays private."""
    real = safety.is_public
    monkeypatch.setattr(safety, "is_public", lambda a: str(a) == "127.0.0.2" or real(a))
    files = HttpFiles(tmp_path_factory.mktemp("public"), host="127.0.0.2")
    files.start()
    try:
        yield files
    finally:
        files.stop()


def test_downloads_that_redirect_to_loopback_are_refused(
    tmp_path: Path, http_files: HttpFiles, internet_stand_in: HttpFiles
) -> None:
    http_files.add("secret.txt", b"internal only")
    internet_stand_in.add("ok.txt", b"public data")
    internet_stand_in.redirect("sneaky.txt", http_files.url("secret.txt"))
    policy = UrlPolicy(private_addresses=False)
    report = localize_inputs(
        {"a": internet_stand_in.url("ok.txt")}, tmp_path / "in1", tmp_path / "cache", policy=policy
    )
    assert report.downloads[0].path.read_bytes() == b"public data"
    with pytest.raises(LocalizeError, match=r"secret\.txt' is a private address"):
        localize_inputs(
            {"a": internet_stand_in.url("sneaky.txt")},
            tmp_path / "in2",
            tmp_path / "cache",
            policy=policy,
        )
    assert http_files.requests("secret.txt") == 0
    assert not (tmp_path / "in2" / "sneaky.txt").exists()
    # With auth off (one person on their own machine) the same redirect is followed.
    allowed = localize_inputs(
        {"a": internet_stand_in.url("sneaky.txt")}, tmp_path / "in3", tmp_path / "cache2"
    )
    assert allowed.downloads[0].path.read_bytes() == b"internal only"


def test_localize_applies_the_submit_rules_to_comma_separated_values(tmp_path: Path) -> None:
    policy = UrlPolicy.from_settings(Settings(data_dir=tmp_path, auth=True))
    with pytest.raises(LocalizeError, match="local files"):
        localize_inputs(
            {"a": "http://host.invalid/ok.txt,/etc/passwd"},
            tmp_path / "in",
            tmp_path / "cache",
            policy=policy,
        )
    assert not (tmp_path / "in" / "passwd").exists()


def test_with_auth_on_unlisted_s3_buckets_are_refused_in_every_dialect(
    tmp_path: Path, make_algorithm_repo: Callable[..., Path]
) -> None:
    with client_for(
        tmp_path, auth=True, allow_local_repositories=True, allowed_s3_buckets=["open-data"]
    ) as api:
        services = services_of(api)
        token = services.identity.create_user("alice")
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/yaml"}
        repo = make_algorithm_repo({"run.sh": "true\n"})
        inputs = "  file:\n    - name: granule\n"
        registered = api.post(
            "/processes", content=algorithm_yaml(repo, name="s3in", inputs=inputs), headers=headers
        )
        assert registered.status_code == 201, registered.text
        auth = {"Authorization": f"Bearer {token}"}
        bad, good = {"granule": "s3://private/key"}, {"granule": "s3://open-data/key"}
        for path, body in (
            ("/processes/s3in/execution", {"inputs": bad}),
            ("/api/ogc/processes/s3in:main/execution", {"inputs": bad}),
            ("/batches", {"process": "s3in", "jobs": [{"inputs": bad}]}),
        ):
            response = api.post(path, json=body, headers=auth)
            assert response.status_code == 400 and "'private'" in response.text, path
        ok = api.post("/processes/s3in/execution", json={"inputs": good}, headers=auth)
        assert ok.status_code == 201, ok.text


def test_a_job_cannot_make_the_runner_read_a_linked_results_file(
    tmp_path: Path, make_algorithm_repo: Callable[..., Path]
) -> None:
    from opendps.executors.local import LocalExecutor
    from opendps.registry.spec import parse_registration
    from tests.support.dps import wait_for_build, wait_for_job

    victim = tmp_path / "other-users-context.json"
    victim.write_text('{"secret": "not yours"}')
    repo = make_algorithm_repo(
        {"run.sh": f'ln -s {victim} "$DPS_OUTPUT_DIR/_results.json"\necho linked\n'}
    )
    services = Services(fast_settings(tmp_path / "dps"))
    services.catalog.sync_queues(services.settings.queues)
    executor = LocalExecutor(services)
    executor.start()
    try:
        spec = parse_registration(algorithm_yaml(repo, name="linker"))
        pid = services.algorithms.register(spec, owner="anonymous").process_id
        wait_for_build(services, pid)
        job = services.jobs.submit(Submission(pid, {}), owner="anonymous")
        done = wait_for_job(services, job.id)
    finally:
        executor.stop()
        services.close()
    assert done.status.value == "successful", done.message
    assert "not yours" not in json.dumps(done.results)

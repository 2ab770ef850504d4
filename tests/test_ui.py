"""The web UI at /ui/: pages, forms, escaping, errors, auth, and one real browser run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from opendps.api.app import create_app
from opendps.models import JobStatus
from opendps.service.context import Services
from opendps.service.jobs import output_prefix
from opendps.service.queries import JobQuery
from opendps.settings import Settings
from tests.support.dps import fast_settings
from tests.support.live_server import LiveServer

HELLO = "hello-world:1.0.0"
SCRIPT = '<script>alert("x")</script>'


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, run_jobs=False)) as test_client:
        yield test_client


def services_of(client: TestClient) -> Services:
    return client.app.state.services  # type: ignore[attr-defined]


def submit(client: TestClient, name: str = "Ann", **fields: str) -> str:
    """Submit hello-world through the form; answers the new job's id."""
    data = {"input:name": name, "priority": "5", "tag": "", **fields}
    response = client.post(f"/ui/processes/{HELLO}", data=data, follow_redirects=False)
    assert response.status_code == 303, response.text
    match = re.fullmatch(r"/ui/jobs/([0-9a-f-]{36})\?done=submitted", response.headers["location"])
    assert match, response.headers["location"]
    return match.group(1)


def registration(name: str = "demo", description: str = "A demo", version: str = "main") -> str:
    return (
        f"algorithm_name: {name}\n"
        f"algorithm_version: {version}\n"
        f"algorithm_description: '{description}'\n"
        "repository_url: file:///nonexistent/demo.git\n"
        "run_command: demo/run.sh\n"
        "inputs:\n"
        "  file:\n"
        "    - {name: granule, description: the file to read}\n"
        "  positional:\n"
        "    - {name: threshold, default: '0.5', data_type: number}\n"
    )


def job_ids_on(html: str) -> list[str]:
    return re.findall(r'<tr data-job="([0-9a-f-]{36})"', html)


# -- pages ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/ui/", "/ui/jobs", "/ui/processes", f"/ui/processes/{HELLO}", "/ui/processes/echo"],
)
def test_pages_render_as_self_contained_html(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    html = response.text
    assert '<link rel="stylesheet" href="/ui/static/ui.css">' in html
    # nothing from other origins: no CDN scripts, styles or fonts
    assert not re.search(r'(src|href)="(https?:)?//', html)


def test_static_files_and_redirects(client: TestClient) -> None:
    for name, media in (("ui.css", "text/css"), ("ui.js", "javascript"), ("favicon.svg", "svg")):
        response = client.get(f"/ui/static/{name}")
        assert response.status_code == 200 and media in response.headers["content-type"]
    assert "http" not in client.get("/ui/static/ui.js").text.replace("HTTP ", "")
    response = client.get("/", headers={"Accept": "text/html"}, follow_redirects=False)
    assert response.status_code in (302, 303, 307) and response.headers["location"] == "/ui/"
    response = client.get("/ui", follow_redirects=False)
    assert response.headers["location"] == "/ui/"


def test_dashboard_shows_queues_counts_and_recent_jobs(client: TestClient) -> None:
    first = submit(client, "One")
    submit(client, "Two")
    client.post(f"/ui/jobs/{first}/cancel", follow_redirects=False)
    html = client.get("/ui/").text
    for queue in ("dps-sandbox", "dps-worker-8gb", "dps-worker-16gb", "dps-worker-32gb"):
        assert queue in html
    assert "8.0 GiB" in html and "10 min</td>" in html  # sandbox limits
    assert re.search(r'card-value">1</span><span class="card-label">accepted', html)
    assert re.search(r'card-value">1</span><span class="card-label">dismissed', html)
    assert re.search(r'card-value">2</span><span class="card-label">jobs', html)
    assert first in html  # recent jobs


# -- submitting ---------------------------------------------------------------------------


def test_submit_form_creates_job_and_shows_it(client: TestClient) -> None:
    job_id = submit(client, "Grace", queue="dps-worker-16gb", priority="7", tag="run-1")
    job = services_of(client).jobs.get(job_id, "anonymous")
    assert (job.inputs, job.queue, job.priority, job.tags) == (
        {"name": "Grace"},
        "dps-worker-16gb",
        7,
        ["run-1"],
    )
    html = client.get(f"/ui/jobs/{job_id}?done=submitted").text
    assert "Job submitted." in html
    for text in ("Grace", "dps-worker-16gb", "run-1", HELLO, "accepted", ">Cancel<"):
        assert text in html
    assert ">Retry<" not in html
    assert "Outputs are staged when the job ends." in html


def test_submit_form_lists_every_input_with_defaults(
    client: TestClient, settings: Settings
) -> None:
    response = client.post("/ui/processes", data={"package": registration()})
    assert response.status_code == 200  # followed the redirect to the process page
    html = response.text
    assert 'name="input:granule"' in html and 'name="input:threshold"' in html
    assert "default: 0.5" in html and "the file to read" in html
    assert "queued" in html  # the build waits for a worker
    for queue in settings.queues:
        assert f'<option value="{queue.name}"' in html


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"input:name": ""}, 400, "missing required input &#39;name&#39;"),
        ({"priority": "12"}, 400, "priority must be 0..9"),
        ({"priority": "high"}, 400, "priority must be an integer 0..9"),
        ({"queue": "no-such-queue"}, 400, "unknown queue &#39;no-such-queue&#39;"),
    ],
)
def test_bad_submissions_show_the_error_on_the_form(
    client: TestClient, fields: dict[str, str], status: int, message: str
) -> None:
    data = {"input:name": "Kept", "priority": "5", "tag": "keep-me", **fields}
    response = client.post(f"/ui/processes/{HELLO}", data=data)
    assert response.status_code == status
    assert "text/html" in response.headers["content-type"]
    assert message in response.text
    assert "Traceback" not in response.text
    assert 'value="keep-me"' in response.text  # what was typed is kept
    assert services_of(client).jobs.list_jobs(JobQuery(limit=1), "anonymous").number_matched == 0


def test_file_inputs_are_validated(client: TestClient) -> None:
    client.post("/ui/processes", data={"package": registration()})
    response = client.post(
        "/ui/processes/demo:main", data={"input:granule": "not a url", "queue": "dps-sandbox"}
    )
    assert response.status_code == 400
    assert "is a file input" in response.text
    response = client.post(
        "/ui/processes/demo:main",
        data={"input:granule": "https://a.test/1.tif, https://a.test/2.tif", "priority": "5"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    job_id = response.headers["location"].split("/")[3].split("?")[0]
    inputs = services_of(client).jobs.get(job_id, "anonymous").inputs
    assert inputs == {"granule": ["https://a.test/1.tif", "https://a.test/2.tif"], "threshold": 0.5}


def test_config_inputs_accept_json(client: TestClient) -> None:
    response = client.post(
        "/ui/processes/echo",
        data={"input:echoInput": "hi", "input:arrayInput": "[1, 2, 3]", "priority": "5"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    job_id = response.headers["location"].split("/")[3].split("?")[0]
    assert services_of(client).jobs.get(job_id, "anonymous").inputs["arrayInput"] == [1, 2, 3]


# -- registering ----------------------------------------------------------------------------


def test_register_form(client: TestClient) -> None:
    response = client.post(
        "/ui/processes", data={"package": registration()}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/processes/demo:main"
    html = client.get("/ui/processes").text
    assert "demo:main" in html and "build-queued" in html
    algorithm = services_of(client).algorithms.get("demo:main")
    assert algorithm.owner == "anonymous"

    again = client.post("/ui/processes", data={"package": registration(description="v2")})
    assert again.status_code == 409
    assert "already" in again.text.lower() or "exists" in again.text.lower()
    assert "v2" in again.text  # the pasted text is kept in the form

    replaced = client.post(
        "/ui/processes",
        data={"package": registration(description="v2"), "replace": "on"},
        follow_redirects=False,
    )
    assert replaced.status_code == 303
    assert services_of(client).algorithms.get("demo:main").spec["description"] == "v2"


@pytest.mark.parametrize(
    ("package", "message"),
    [
        ("", "paste the algorithm"),
        ("algorithm_name: [unclosed", "not valid YAML"),
        ("algorithm_name: x\n", "algorithm_version"),
    ],
)
def test_bad_registrations_show_the_error(client: TestClient, package: str, message: str) -> None:
    response = client.post("/ui/processes", data={"package": package})
    assert response.status_code == 400
    assert message in response.text
    assert "Traceback" not in response.text


def test_builtin_processes_cannot_be_replaced(client: TestClient) -> None:
    package = registration(name="echo", version="1.0.0")
    response = client.post("/ui/processes", data={"package": package, "replace": "on"})
    assert response.status_code == 403
    assert "built in" in response.text


# -- escaping -------------------------------------------------------------------------------


def test_user_supplied_text_is_escaped(client: TestClient) -> None:
    client.post("/ui/processes", data={"package": registration(description=SCRIPT)})
    for path in ("/ui/processes", "/ui/processes/demo:main"):
        html = client.get(path).text
        assert SCRIPT not in html
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    job_id = submit(client, name=SCRIPT, tag='"><img src=x onerror=alert(1)>')
    for path in (f"/ui/jobs/{job_id}", "/ui/jobs", "/ui/"):
        html = client.get(path).text
        assert SCRIPT not in html and "<img src=x" not in html, path
    error = client.post(f"/ui/processes/{HELLO}", data={"input:name": "x", "queue": SCRIPT})
    assert error.status_code == 400 and SCRIPT not in error.text
    missing = client.get("/ui/processes/%3Cscript%3E")
    assert missing.status_code == 404 and "<script>" not in missing.text


# -- the job list ---------------------------------------------------------------------------


def test_job_list_pages_newest_first_with_filters(client: TestClient) -> None:
    ids = [submit(client, f"n{i}", tag="even" if i % 2 == 0 else "odd") for i in range(7)]
    newest_first = list(reversed(ids))

    first = client.get("/ui/jobs?limit=3")
    assert first.status_code == 200
    assert "7 jobs matched, showing 3." in first.text
    seen = job_ids_on(first.text)
    html = first.text
    while (match := re.search(r'rel="next" href="([^"]+)"', html)) is not None:
        html = client.get(match.group(1).replace("&amp;", "&")).text
        assert "First page" in html
        seen += job_ids_on(html)
    assert seen == newest_first  # complete, stable, no duplicates

    tagged = client.get("/ui/jobs?tag=even").text
    assert "4 jobs matched" in tagged and set(job_ids_on(tagged)) == set(ids[::2])

    client.post(f"/ui/jobs/{ids[0]}/cancel")
    dismissed = client.get("/ui/jobs?status=dismissed").text
    assert "1 job matched" in dismissed and job_ids_on(dismissed) == [ids[0]]
    assert job_ids_on(client.get("/ui/jobs?status=accepted&tag=even&limit=25").text) == [
        ids[6],
        ids[4],
        ids[2],
    ]
    assert len(job_ids_on(client.get("/ui/jobs?process=hello-world").text)) == 7
    assert job_ids_on(client.get("/ui/jobs?process=echo").text) == []
    assert job_ids_on(client.get("/ui/jobs?queue=dps-sandbox").text) == []


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("status=bogus", "unknown status &#39;bogus&#39;"),
        ("next=not-a-cursor", "is not a cursor"),
        ("limit=0", "limit must be"),
    ],
)
def test_job_list_bad_filters(client: TestClient, query: str, message: str) -> None:
    response = client.get(f"/ui/jobs?{query}")
    assert response.status_code == 400
    assert message in response.text
    assert '<form class="filters"' in response.text  # the filters stay usable


def test_live_rows_answer_status(client: TestClient) -> None:
    job_id = submit(client)
    answer = client.get(f"/ui/live/jobs?id={job_id}&id=unknown").json()
    assert answer["jobs"] == {
        job_id: {
            "status": "accepted",
            "terminal": False,
            "duration": "—",
            "message": "",
            "reason": "",
        }
    }


# -- one job --------------------------------------------------------------------------------


def test_cancel_then_retry(client: TestClient) -> None:
    job_id = submit(client, "Zed", tag="t")
    response = client.post(f"/ui/jobs/{job_id}/cancel", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/ui/jobs/{job_id}?done=cancel"
    html = client.get(response.headers["location"]).text
    assert "Cancel requested." in html and "dismissed" in html and "cancelled" in html
    assert ">Retry<" in html and ">Cancel<" not in html

    # cancelling a finished job again is harmless
    again = client.post(f"/ui/jobs/{job_id}/cancel", follow_redirects=False)
    assert again.status_code == 303

    retried = client.post(f"/ui/jobs/{job_id}/retry", follow_redirects=False)
    assert retried.status_code == 303
    new_id = retried.headers["location"].split("/")[3].split("?")[0]
    assert new_id != job_id
    new = services_of(client).jobs.get(new_id, "anonymous")
    assert (new.inputs, new.tags, new.status) == ({"name": "Zed"}, ["t"], JobStatus.ACCEPTED)
    assert "Submitted again as this new job." in client.get(retried.headers["location"]).text


def test_job_page_shows_metrics_outputs_logs_and_history(
    client: TestClient, tmp_path: Path
) -> None:
    services = services_of(client)
    job_id = submit(client, "Metrics")
    store = services.job_store
    work = tmp_path / "work"
    work.mkdir()
    (work / "_stdout.txt").write_text("hello <stdout>\n")
    (work / "_stderr.txt").write_text("a warning\n")
    store.transition(
        job_id, JobStatus.RUNNING, allowed_from=[JobStatus.ACCEPTED], started=datetime.now(UTC)
    )
    store.update_job(job_id, work_dir=str(work))

    running = client.get(f"/ui/jobs/{job_id}").text
    assert "hello &lt;stdout&gt;" in running and "a warning" in running
    assert "data-live" in running and 'data-stdout-offset="15"' in running
    live = client.get(f"/ui/live/jobs/{job_id}?stdout=15&stderr=0").json()
    assert (live["stdout"], live["stderr"], live["stdout_offset"]) == ("", "a warning\n", 15)
    with open(work / "_stdout.txt", "a") as handle:
        handle.write("more\n")
    live = client.get(f"/ui/live/jobs/{job_id}?stdout=15&stderr=10").json()
    assert (live["stdout"], live["stdout_offset"], live["status"]) == ("more\n", 20, "running")

    job = services.jobs.get(job_id, "anonymous")
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "result file.txt").write_text("42")
    (out / "sub" / "b.bin").write_bytes(b"\0" * 2048)
    services.storage.put_dir(out, output_prefix(job))
    metrics = {
        "peak_memory_bytes": 50 * 1024 * 1024,
        "memory_limit_bytes": 8 * 1024**3,
        "cpu_user_seconds": 1.5,
        "cpu_system_seconds": 0.25,
        "localize": {"files": 2, "bytes": 3 * 1024 * 1024, "seconds": 1.2},
        "stage": {"files": 2, "bytes": 2050, "seconds": 0.1},
        "host": {"hostname": "node-7"},
    }
    store.update_job(job_id, metrics=metrics)
    store.transition(job_id, JobStatus.SUCCESSFUL, message="done", exit_code=0)

    html = client.get(f"/ui/jobs/{job_id}").text
    assert "data-live" not in html
    for text in (
        "50.0 MiB of 8.0 GiB",
        "1.50 s user, 0.25 s system",
        "3.0 MiB in 2 file(s)",
        "2.0 KiB in 2 file(s)",
        "node-7",
        "Queue wait",
    ):
        assert text in html, text
    assert f'href="/jobs/{job_id}/outputs/result%20file.txt"' in html
    assert f'href="/jobs/{job_id}/outputs/sub/b.bin"' in html
    assert html.count('class="badge badge-') >= 4  # title + accepted, running, successful
    download = client.get(f"/jobs/{job_id}/outputs/result%20file.txt")
    assert download.status_code == 200 and download.text == "42"


def test_unknown_things_are_404_pages(client: TestClient) -> None:
    for path in ("/ui/jobs/no-such-job", "/ui/processes/nope:1", "/ui/nothing-here"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "text/html" in response.headers["content-type"]
        assert "Not found" in response.text and "Traceback" not in response.text
    response = client.post("/ui/jobs/no-such-job/cancel")
    assert response.status_code == 404 and "no job with id" in response.text
    assert client.get("/ui/live/jobs/no-such-job").status_code == 404


def test_forms_refuse_other_origins(client: TestClient) -> None:
    job_id = submit(client)
    response = client.post(f"/ui/jobs/{job_id}/cancel", headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    assert services_of(client).jobs.get(job_id, "anonymous").status == JobStatus.ACCEPTED
    proxied = client.post(
        f"/ui/jobs/{job_id}/cancel",
        headers={"Origin": "https://dps.example.org", "X-Forwarded-Host": "dps.example.org"},
        follow_redirects=False,
    )
    assert proxied.status_code == 303
    same = client.post(
        f"/ui/jobs/{job_id}/cancel",
        headers={"Origin": "http://testserver"},
        follow_redirects=False,
    )
    assert same.status_code == 303


# -- auth -----------------------------------------------------------------------------------


def test_with_auth_people_sign_in_and_see_only_their_jobs(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path / "dps", auth=True)
    app = create_app(settings, run_jobs=False)
    services: Services = app.state.services
    ann = services.identity.create_user("ann", is_guest=False)
    bob = services.identity.create_user("bob", is_guest=False)
    with TestClient(app) as browser:
        response = browser.get("/ui/jobs?tag=x")
        assert response.status_code == 401
        assert "Sign in" in response.text and 'value="/ui/jobs?tag=x"' in response.text

        wrong = browser.post("/ui/login", data={"token": "nope", "next": "/ui/jobs"})
        assert wrong.status_code == 401 and "token" in wrong.text

        signed = browser.post(
            "/ui/login", data={"token": ann, "next": "/ui/jobs"}, follow_redirects=False
        )
        assert signed.status_code == 303 and signed.headers["location"] == "/ui/jobs"
        cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie
        assert ">ann<" in browser.get("/ui/").text
        ann_job = submit(browser, "from ann")
        assert services.jobs.get(ann_job, "ann").owner == "ann"
        assert ann_job in browser.get("/ui/jobs").text

        browser.cookies.clear()
        as_bob = {"Authorization": f"Bearer {bob}"}
        assert ann_job not in browser.get("/ui/jobs", headers=as_bob).text
        assert browser.get(f"/ui/jobs/{ann_job}", headers=as_bob).status_code == 404

        browser.post("/ui/login", data={"token": ann})
        logout = browser.post("/ui/logout", follow_redirects=False)
        assert logout.status_code == 303
        browser.cookies.clear()
        assert browser.get("/ui/").status_code == 401


def test_login_refuses_foreign_redirects(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path / "dps", auth=True)
    app = create_app(settings, run_jobs=False)
    token = app.state.services.identity.create_user("ann")
    with TestClient(app) as browser:
        for target in ("https://evil.example/", "//evil.example/ui/", "/docs"):
            response = browser.post(
                "/ui/login", data={"token": token, "next": target}, follow_redirects=False
            )
            assert response.headers["location"] == "/ui/", target


# -- a real browser -------------------------------------------------------------------------


def chromium() -> str:
    """Debian's Chromium (``apt-get install -y chromium``); skipped locally, required in CI."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium is not installed (apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return path


def run_chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
    ]
    env = {**os.environ, "HOME": str(profile)}
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)


def submit_over_http(http: httpx.Client, process_id: str, **fields: str) -> str:
    """Submit through the form of a live server; answers the job id."""
    data = {"priority": "5", **{f"input:{k}": v for k, v in fields.items() if k != "tag"}}
    data["tag"] = fields.get("tag", "")
    response = http.post(f"/ui/processes/{process_id}", data=data, follow_redirects=False)
    assert response.status_code == 303, response.text
    return response.headers["location"].split("/")[3].split("?")[0]


@pytest.mark.slow
def test_browser_shows_submitted_job(live_server: LiveServer, tmp_path: Path) -> None:
    browser = chromium()
    base = live_server.url
    profile = tmp_path / "chromium"
    with httpx.Client(base_url=base, timeout=30) as http:
        job_id = submit_over_http(http, HELLO, name="Browser", tag="from-the-form")
        info = live_server.client.wait(job_id, timeout=120)
        assert info["status"] == "successful", info
        other = live_server.client.submit(HELLO, {"name": "Second"}, tag="api")["jobID"]

        dom = run_chromium(browser, profile, "--dump-dom", f"{base}/ui/jobs")
        assert dom.returncode == 0, dom.stderr[-2000:]
        assert f'data-job="{job_id}"' in dom.stdout and f'data-job="{other}"' in dom.stdout
        assert "from-the-form" in dom.stdout and "badge-successful" in dom.stdout

        page = run_chromium(browser, profile, "--dump-dom", f"{base}/ui/jobs/{job_id}")
        assert page.returncode == 0, page.stderr[-2000:]
        assert f"/jobs/{job_id}/outputs/" in page.stdout and "Browser" in page.stdout

        # The page script follows a running job and reloads when it ends; virtual time
        # runs the page's timers quickly while the job runs in real time.
        slow = submit_over_http(http, "echo", echoInput="slow", pause="3")
        followed = run_chromium(
            browser,
            profile,
            "--virtual-time-budget=3600000",
            "--dump-dom",
            f"{base}/ui/jobs/{slow}",
        )
        assert live_server.client.status(slow)["status"] == "successful"
        assert 'class="badge badge-successful"' in followed.stdout, followed.stdout[-3000:]

        # ... and refreshes the rows of unfinished jobs on a list.
        slow = submit_over_http(http, "echo", echoInput="slow", pause="3", tag="rows")
        listed = run_chromium(
            browser,
            profile,
            "--virtual-time-budget=3600000",
            "--dump-dom",
            f"{base}/ui/jobs?tag=rows",
        )
        row = listed.stdout[listed.stdout.index(f'data-job="{slow}"') :]
        assert 'class="badge badge-successful"' in row[: row.index("</tr>")]

    shots = Path(os.environ.get("OPENDPS_UI_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    for name, url in (("jobs", f"{base}/ui/jobs"), ("job", f"{base}/ui/jobs/{job_id}")):
        png = shots / f"opendps-ui-{name}.png"
        shot = run_chromium(browser, profile, f"--screenshot={png}", "--window-size=1280,900", url)
        assert shot.returncode == 0, shot.stderr[-2000:]
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000

"""The UI pages of DESIGN §16 over the real app (no browser): job page pieces, the job list's
tiles, sorting, paging and bulk actions, batches, queues, secrets, the register form and
the CSV batch; and the pure helpers that explain a job."""

from __future__ import annotations

import html as htmllib
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from opendps.api.app import create_app
from opendps.models import Attempt, Job, JobStatus, Phase, Reason
from opendps.service.context import Services
from opendps.service.jobs import output_prefix
from opendps.service.queries import BatchQuery, JobQuery
from opendps.service.timeline import explain, right_size, timeline
from opendps.settings import QueueConfig, Settings
from tests.support.dps import fast_settings

HELLO = "hello-world:1.0.0"
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
GiB = 1024**3


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, run_jobs=False)) as test_client:
        yield test_client


def services_of(client: TestClient) -> Services:
    return client.app.state.services  # type: ignore[attr-defined]


def submit(client: TestClient, name: str = "Ann", **fields: str) -> str:
    data = {"input:name": name, "priority": "5", "tag": "", **fields}
    response = client.post(f"/ui/processes/{HELLO}", data=data, follow_redirects=False)
    assert response.status_code == 303, response.text
    return response.headers["location"].split("/")[3].split("?")[0]


def job_ids_on(html: str) -> list[str]:
    return re.findall(r'<tr data-job="([0-9a-f-]{36})"', html)


def make_job(**fields: object) -> Job:
    values: dict[str, object] = {
        "id": "0" * 36, "seq": 1, "algorithm_id": 1, "algorithm": "a", "version": "1",
        "owner": "ann", "queue": "q", "priority": 5, "tags": [], "inputs": {},
        "status": JobStatus.FAILED, "reason": None, "phase": None, "message": None,
        "batch_id": None, "attempts": 1, "cancel_requested": False, "created": T0,
        "started": T0 + timedelta(seconds=30), "finished": T0 + timedelta(seconds=90),
        "updated": T0, "work_dir": None, "output_url": None, "exit_code": None, "progress": None,
    }  # fmt: skip
    values.update(fields)
    return Job(**values)  # type: ignore[arg-type]


# -- explaining a job -------------------------------------------------------------------------

QUEUE = QueueConfig(name="dps-sandbox", memory="8GB", time_limit="10m")


@pytest.mark.parametrize(
    ("reason", "phase", "message", "exit_code", "words"),
    [
        (
            Reason.LOCALIZE_ERROR,
            Phase.LOCALIZE,
            "download of https://data.example/g.tif failed: HTTP 404 Not Found",
            None,
            "the input https://data.example/g.tif answered 404 (Not Found) while downloading",
        ),
        (Reason.TIMEOUT, Phase.RUN, "killed", None, "killed after the queue's 10-minute limit"),
        (Reason.OOM, Phase.RUN, "killed", None, "used more than the queue's 8 GiB of memory"),
        (Reason.EXIT_CODE, Phase.RUN, "x", 3, "the run command ended with exit code 3"),
        (Reason.CANCELLED, Phase.RUN, "cancelled by request", None, "cancelled while running"),
        (Reason.WORKER_LOST, Phase.STAGE, "", None, "lost while uploading its outputs"),
    ],
)
def test_failures_are_explained_in_words(
    reason: Reason, phase: Phase, message: str, exit_code: int | None, words: str
) -> None:
    job = make_job(reason=reason, phase=phase, message=message, exit_code=exit_code)
    assert words in (explain(job, QUEUE) or "")


def test_no_explanation_for_a_successful_job() -> None:
    assert explain(make_job(status=JobStatus.SUCCESSFUL), QUEUE) is None


def test_right_size_names_the_smaller_queue_that_would_do() -> None:
    queues = [
        QueueConfig(name="small", memory="2GB"),
        QueueConfig(name="big", memory="8GB"),
        QueueConfig(name="huge", memory="16GB"),
    ]
    peak = int(1.2 * GiB)
    assert right_size(peak, queues[1], queues) == (
        "peak 1.2 GiB of 8 GiB: the 2 GiB queue would do (small)"
    )
    assert "close to the limit; huge has 16 GiB" in (
        right_size(int(7.8 * GiB), queues[1], queues) or ""
    )
    assert right_size(int(1.9 * GiB), queues[0], queues) == (
        "peak 1.9 GiB of 2 GiB: close to the limit; big has 8 GiB"
    )
    assert right_size(int(15.9 * GiB), queues[2], queues) == (
        "peak 15.9 GiB of 16 GiB: close to the limit"
    )
    assert right_size(None, queues[1], queues) is None


def test_timeline_shows_each_wait_apart_from_each_attempt() -> None:
    def attempt(number: int, start: int, end: int) -> Attempt:
        return Attempt(
            id=number, job_id="j", number=number, host="node-1", worker="w", pid=None,
            pid_started=None, started=T0 + timedelta(seconds=start),
            finished=T0 + timedelta(seconds=end), exit_code=None,
        )  # fmt: skip

    job = make_job(status=JobStatus.SUCCESSFUL, finished=T0 + timedelta(seconds=200))
    spans = timeline(job, [attempt(1, 30, 60), attempt(2, 100, 200)])
    assert [(s.kind, s.label, s.seconds) for s in spans] == [
        ("wait", "Waiting in the queue", 30.0),
        ("attempt", "Attempt 1", 30.0),
        ("wait", "Waiting again (re-queued)", 40.0),
        ("attempt", "Attempt 2", 100.0),
    ]
    waiting = timeline(make_job(status=JobStatus.ACCEPTED, started=None, finished=None), [])
    assert waiting[0].current and waiting[0].end is None


# -- the job page --------------------------------------------------------------------------------


def test_job_page_draws_the_series_with_the_queue_limit_and_a_hint(client: TestClient) -> None:
    services = services_of(client)
    job_id = submit(client, "Chart", queue="dps-worker-16gb")
    samples = [
        {"t": float(t), "rss_bytes": (t + 1) * 500 * 1024**2, "cpu_percent": 90.0}
        for t in range(10)
    ]
    services.samples.save_samples(job_id, samples)
    services.job_store.transition(
        job_id, JobStatus.RUNNING, allowed_from=[JobStatus.ACCEPTED], started=datetime.now(UTC)
    )
    services.job_store.update_job(
        job_id, metrics={"peak_memory_bytes": 5000 * 1024**2, "memory_limit_bytes": 16 * GiB}
    )
    assert client.get(f"/jobs/{job_id}/metrics").json()["samples"] == samples
    html = client.get(f"/ui/jobs/{job_id}").text
    assert html.count('<polyline class="mem-line"') == 1
    assert '<line class="limit"' in html and "queue limit 16 GiB" in html
    assert "peak 4.9 GiB of 16 GiB: the 8 GiB queue would do (dps-worker-8gb)" in html
    live = client.get(f"/ui/live/jobs/{job_id}?chart=1").json()
    assert '<polyline class="mem-line"' in live["chart"]


def test_job_page_previews_text_and_images_and_searches_logs(
    client: TestClient, tmp_path: Path
) -> None:
    services = services_of(client)
    job_id = submit(client, "Outputs")
    job = services.jobs.get(job_id, "anonymous")
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.csv").write_text("a,b\n1,<2>\n")
    (out / "map.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    (out / "_stdout.txt").write_text("step one\nERROR: disk\nstep two\n")
    services.storage.put_dir(out, output_prefix(job))
    services.job_store.transition(
        job_id, JobStatus.RUNNING, allowed_from=[JobStatus.ACCEPTED], started=datetime.now(UTC)
    )
    services.job_store.transition(job_id, JobStatus.SUCCESSFUL, message="done")
    html = client.get(f"/ui/jobs/{job_id}").text
    assert "a,b\n1,&lt;2&gt;" in html  # a text preview, escaped
    assert f'<img src="/jobs/{job_id}/outputs/map.png"' in html
    found = client.get(f"/ui/jobs/{job_id}?q=error").text
    assert "1 line contain" in found and "stdout:2: ERROR: disk" in found
    download = client.get(f"/jobs/{job_id}/outputs/summary.csv")
    assert download.headers["content-security-policy"] == "sandbox"  # never runs as our page


def test_the_execute_request_is_kept_on_the_job_never_in_its_history(
    client: TestClient,
) -> None:
    response = client.post(
        "/processes/echo/execution",
        json={"inputs": {"echoInput": "hi"}, "response": "raw"},
        headers={"Prefer": "respond-async"},
    )
    job_id = response.headers["location"].rsplit("/", 1)[1]
    services = services_of(client)
    # Kept for the results document (revision 0002: the job's ``request``)...
    assert services.jobs.get(job_id, "anonymous").request["response"] == "raw"
    assert not any(
        "execute request" in (e.message or "") for e in services.job_store.job_events(job_id)
    )
    # ...and never shown as history.
    assert "execute request" not in client.get(f"/ui/jobs/{job_id}").text
    assert "execute request" not in client.get(f"/jobs/{job_id}/events").text


def test_snippets_reproduce_the_job(client: TestClient) -> None:
    job_id = submit(client, "O'Hara", tag="t1")
    html = client.get(f"/ui/jobs/{job_id}").text
    assert (
        "dps run-local algorithm.yml \\\n  -i &#39;name=O&#39;&#34;&#39;&#34;&#39;Hara&#39;" in html
    )
    assert "client.submit(" in html and "maap.submit_job(" in html
    assert "&#39;dps-worker-8gb&#39;, tag=&#39;t1&#39;" in html


# -- the job list ----------------------------------------------------------------------------------


def test_tiles_count_each_status_and_filter_when_clicked(client: TestClient) -> None:
    ids = [submit(client, f"n{i}", tag="run") for i in range(3)]
    services_of(client).jobs.cancel(ids[0], "anonymous")
    html = client.get("/ui/jobs?tag=run").text
    assert 'data-count="accepted">2<' in html and 'data-count="dismissed">1<' in html
    assert 'data-count="all">3<' in html
    assert 'href="/ui/jobs?tag=run&amp;status=dismissed"' in html
    only = client.get("/ui/jobs?tag=run&status=dismissed").text
    assert job_ids_on(only) == [ids[0]]
    assert 'data-count="accepted">2<' in only  # tiles keep counting the other statuses


def test_sorting_pages_stay_stable_while_jobs_arrive(client: TestClient) -> None:
    ids = [submit(client, f"n{i}", priority=str(i % 3)) for i in range(7)]
    jobs = services_of(client).jobs
    expected = sorted(ids, key=lambda i: (-int(jobs.get(i, "anonymous").priority), -ids.index(i)))
    first = client.get("/ui/jobs?sort=-priority&limit=3").text
    assert job_ids_on(first) == expected[:3]
    assert 'aria-sort="descending"' in first
    cursor = re.search(r'href="(/ui/jobs\?[^"]*next=[^"]+)"', first).group(1).replace("&amp;", "&")
    submit(client, "late", priority="9")  # a new job with the highest priority...
    second = client.get(cursor).text
    assert job_ids_on(second) == expected[3:6]  # ...does not shift the next page
    ascending = client.get("/ui/jobs?sort=created").text
    assert job_ids_on(ascending)[:7] == ids


def test_free_text_and_time_range_filters(client: TestClient) -> None:
    a = submit(client, "x", tag="granule-2024-001")
    b = submit(client, "y", tag="other")
    assert job_ids_on(client.get("/ui/jobs?q=2024").text) == [a]
    assert job_ids_on(client.get(f"/ui/jobs?q={b[:8]}").text) == [b]
    assert job_ids_on(client.get("/ui/jobs?q=100%25").text) == []  # % is text, not a wildcard
    future = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    assert job_ids_on(client.get(f"/ui/jobs?since={future}").text) == []
    assert set(job_ids_on(client.get(f"/ui/jobs?until={future}").text)) == {a, b}
    bad = client.get("/ui/jobs?since=yesterday")
    assert bad.status_code == 400 and "from: &#39;yesterday&#39; is not a date" in bad.text


def test_live_refresh_counts_newer_jobs_without_moving_rows(client: TestClient) -> None:
    first = submit(client, "a", tag="live")
    html = client.get("/ui/jobs?tag=live").text
    top = re.search(r'data-top="(\d+)"', html).group(1)
    submit(client, "b", tag="live")
    submit(client, "c", tag="other")
    answer = client.get(f"/ui/live/jobs?id={first}&tag=live&counts=1&top={top}").json()
    assert answer["newer"] == 1 and answer["counts"]["accepted"] == 2
    assert answer["jobs"][first]["status"] == "accepted"


def test_several_jobs_cancelled_then_retried_at_once(client: TestClient) -> None:
    ids = [submit(client, f"n{i}", tag="bulk") for i in range(3)]
    done = client.post(
        "/ui/jobs/actions",
        data={"job": ids[:2], "action": "cancel", "back": "/ui/jobs?tag=bulk"},
        follow_redirects=False,
    )
    assert done.headers["location"] == "/ui/jobs?tag=bulk&cancelled=2&skipped=0"
    assert "2 job(s) cancelled." in client.get(done.headers["location"]).text
    statuses = [services_of(client).jobs.get(i, "anonymous").status for i in ids]
    assert statuses == [JobStatus.DISMISSED, JobStatus.DISMISSED, JobStatus.ACCEPTED]
    retried = client.post(
        "/ui/jobs/actions", data={"job": ids, "action": "retry"}, follow_redirects=False
    )
    assert retried.headers["location"] == "/ui/jobs?retried=2&skipped=1"
    nothing = client.post("/ui/jobs/actions", data={"action": "cancel"})
    assert nothing.status_code == 400 and "select at least one job" in nothing.text


# -- batches ---------------------------------------------------------------------------------------


def test_csv_batch_from_the_process_page(client: TestClient) -> None:
    table = "name,tag,priority\nAnn,a,7\nBob,,\n\nCy,c,1\n"
    response = client.post(
        f"/ui/processes/{HELLO}/batch",
        data={"queue": "dps-worker-16gb", "tag": "shared", "priority": "5"},
        files={"file": ("jobs.csv", table.encode(), "text/csv")},
        follow_redirects=False,
    )
    assert response.status_code == 303
    batch_id = response.headers["location"].rsplit("/", 1)[1]
    query = JobQuery(batch=batch_id, limit=10, sort="created")
    jobs = services_of(client).jobs.list_jobs(query, "anonymous").items
    assert [(j.inputs["name"], j.tag, j.priority, j.queue) for j in jobs] == [
        ("Ann", "a", 7, "dps-worker-16gb"),
        ("Bob", "shared", 5, "dps-worker-16gb"),
        ("Cy", "c", 1, "dps-worker-16gb"),
    ]
    page = client.get(f"/ui/batches/{batch_id}").text
    assert "0/3</strong> finished" in page and "3 accepted" in page
    assert f'href="/ui/jobs?batch={batch_id}"' in page
    assert batch_id[:8] in client.get("/ui/batches").text


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("nme\nAnn\n", "line 1: column &#39;nme&#39; is neither an input"),
        ("name,priority\nAnn,high\n", "line 2, column &#39;priority&#39;: &#39;high&#39;"),
        ("name\nAnn,extra\n", "line 2: 2 cells but the header has 1"),
        ("name\n", "the table has a header but no rows"),
        ("", "choose a CSV file or paste a table"),
    ],
)
def test_bad_csv_batches_name_the_line_and_column(
    client: TestClient, table: str, message: str
) -> None:
    response = client.post(f"/ui/processes/{HELLO}/batch", data={"table": table})
    assert response.status_code == 400 and message in response.text
    assert services_of(client).batches.list(BatchQuery(), "anonymous").number_matched == 0


def test_batch_cancel_and_retry_by_reason(client: TestClient) -> None:
    table = "name\n" + "\n".join(f"n{i}" for i in range(4))
    response = client.post(
        f"/ui/processes/{HELLO}/batch", data={"table": table}, follow_redirects=False
    )
    batch_id = response.headers["location"].rsplit("/", 1)[1]
    cancelled = client.post(f"/ui/batches/{batch_id}/cancel", follow_redirects=False)
    assert cancelled.headers["location"] == f"/ui/batches/{batch_id}?done=cancel"
    page = client.get(cancelled.headers["location"]).text
    assert "4/4</strong> finished" in page and "4 dismissed" in page
    none = client.post(f"/ui/batches/{batch_id}/retry", data={"reason": "oom"})
    assert "nothing to retry" in none.text
    retried = client.post(
        f"/ui/batches/{batch_id}/retry", data={"reason": "cancelled"}, follow_redirects=False
    )
    assert retried.status_code == 303 and retried.headers["location"].endswith("?retried=4")
    bad = client.post(f"/ui/batches/{batch_id}/retry", data={"reason": "bored"})
    assert bad.status_code == 400


def test_with_auth_batches_are_their_owners_only(tmp_path: Path) -> None:
    app = create_app(fast_settings(tmp_path / "dps", auth=True), run_jobs=False)
    services: Services = app.state.services
    ann = {"Authorization": f"Bearer {services.identity.create_user('ann')}"}
    bob = {"Authorization": f"Bearer {services.identity.create_user('bob')}"}
    with TestClient(app) as browser:
        made = browser.post(
            f"/ui/processes/{HELLO}/batch", data={"table": "name\nA\n"}, headers=ann,
            follow_redirects=False,
        )  # fmt: skip
        batch_id = made.headers["location"].rsplit("/", 1)[1]
        assert batch_id[:8] in browser.get("/ui/batches", headers=ann).text
        assert batch_id[:8] not in browser.get("/ui/batches", headers=bob).text
        assert browser.get(f"/ui/batches/{batch_id}", headers=bob).status_code == 404
        assert browser.post(f"/ui/batches/{batch_id}/cancel", headers=bob).status_code == 404
        assert browser.get(f"/ui/live/batches/{batch_id}", headers=bob).status_code == 404
        assert browser.get(f"/batches/{batch_id}", headers=bob).status_code == 404  # the API too
        assert browser.delete(f"/batches/{batch_id}", headers=bob).status_code == 404
        assert browser.post(f"/batches/{batch_id}/retry", headers=bob).status_code == 404
        assert browser.get(f"/batches/{batch_id}", headers=ann).status_code == 200


# -- queues ----------------------------------------------------------------------------------------


def test_queues_page_says_why_jobs_wait(client: TestClient) -> None:
    job_id = submit(client, "waiting")
    html = client.get("/ui/queues").text
    assert "no worker serves the queue dps-worker-8gb" in html  # this app runs no jobs
    assert f'href="/ui/jobs/{job_id}"' in html
    assert "Waiting:" in client.get(f"/ui/jobs/{job_id}").text


# -- secrets ---------------------------------------------------------------------------------------


def test_a_secret_value_is_never_shown_back(client: TestClient) -> None:
    value = "hunter2-very-secret"
    added = client.post("/ui/secrets", data={"name": "TOKEN", "value": value})
    assert added.status_code == 200 and "Secret saved." in added.text
    assert "TOKEN" in added.text and value not in added.text
    duplicate = client.post("/ui/secrets", data={"name": "TOKEN", "value": value + "!"})
    assert duplicate.status_code == 409 and value not in duplicate.text
    updated = client.post("/ui/secrets", data={"name": "TOKEN", "value": "new", "replace": "on"})
    assert "Secret updated." in updated.text
    assert services_of(client).secrets.get("anonymous", "TOKEN") == "new"
    bad = client.post("/ui/secrets", data={"name": "no spaces", "value": "x"})
    assert bad.status_code == 400 and "letters, digits" in bad.text
    gone = client.post("/ui/secrets/TOKEN/delete")
    assert "Secret deleted." in gone.text and "TOKEN</td>" not in gone.text


# -- registering through the form ------------------------------------------------------------------


def register_fields(**extra: str) -> dict[str, str]:
    return {
        "mode": "form",
        "action": "register",
        "input_rows": "3",
        "algorithm_name": "formed",
        "algorithm_version": "v1",
        "repository_url": "https://example.org/org/formed.git",
        "run_command": "formed/run.sh",
        "build_command": "formed/build.sh",
        "algorithm_description": "made with the form",
        "docker_container_url": "registry.example/base:1",
        "queue": "dps-worker-16gb",
        "disk_space": "5GB",
        "input-0-kind": "file",
        "input-0-name": "granule",
        "input-0-description": "the file",
        "input-0-required": "on",
        "input-1-kind": "positional",
        "input-1-name": "threshold",
        "input-1-default": "0.5",
        "input-1-data_type": "number",
        "input-2-kind": "config",
        "input-2-name": "note",
        "input-2-has_default": "on",
        **extra,
    }


def test_register_form_covers_every_maap_field(client: TestClient) -> None:
    preview = client.post("/ui/register/yaml", data=register_fields())
    assert "docker_container_url: registry.example/base:1" in preview.text
    assert "disk_space: 5GB" in preview.text
    response = client.post("/ui/processes", data=register_fields(), follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/processes/formed:v1"
    spec = services_of(client).algorithms.spec_of(services_of(client).algorithms.get("formed:v1"))
    assert (spec.description, spec.build_command, spec.docker_container_url, spec.disk_space) == (
        "made with the form",
        "formed/build.sh",
        "registry.example/base:1",
        "5GB",
    )
    assert [(i.kind, i.name, i.mandatory, i.default, i.data_type) for i in spec.inputs] == [
        ("file", "granule", True, None, None),
        ("positional", "threshold", False, "0.5", "number"),
        ("config", "note", False, "", None),
    ]
    page = client.get("/ui/processes/formed:v1").text
    assert "registry.example/base:1" in page and "5GB" in page
    assert 'id="build"' in page and "data-live" in page  # queued: the page follows it
    live = client.get("/ui/live/processes/formed:v1").json()
    assert live["status"] == "queued" and live["done"] is False
    client.post("/ui/processes", data=register_fields(algorithm_version="v2"))
    versions = client.get("/ui/processes/formed:v2").text
    assert 'id="versions"' in versions
    assert 'href="/ui/processes/formed:v1"' in versions and "this one" in versions


def test_register_form_without_javascript_adds_rows_and_shows_errors(client: TestClient) -> None:
    more = client.post("/ui/processes", data=register_fields(action="more"))
    assert more.status_code == 200 and 'name="input-5-name"' in more.text
    assert 'value="granule"' in more.text  # what was typed is kept
    bad = client.post("/ui/processes", data=register_fields(algorithm_version="feature/x"))
    assert bad.status_code == 400 and "cannot contain" in bad.text
    assert 'value="formed"' in bad.text


def test_with_auth_secrets_are_each_users_own(tmp_path: Path) -> None:
    app = create_app(fast_settings(tmp_path / "dps", auth=True), run_jobs=False)
    services: Services = app.state.services
    ann = {"Authorization": f"Bearer {services.identity.create_user('ann')}"}
    bob = {"Authorization": f"Bearer {services.identity.create_user('bob')}"}
    with TestClient(app) as browser:
        saved = browser.post("/ui/secrets", data={"name": "ANN_KEY", "value": "v1"}, headers=ann)
        assert saved.status_code == 200 and "ANN_KEY" in saved.text
        assert "ANN_KEY" not in browser.get("/ui/secrets", headers=bob).text
        browser.post("/ui/secrets/ANN_KEY/delete", headers=bob)  # bob has none of that name
        assert services.secrets.get("ann", "ANN_KEY") == "v1"
        assert browser.get("/ui/secrets").status_code == 401


@pytest.mark.slow
def test_the_python_snippets_submit_the_job_again(live_server: Any) -> None:
    """The job page's snippets, run as they are, against a real server."""
    job_id = live_server.client.submit(HELLO, {"name": "Snip"}, tag="again")["jobID"]
    live_server.client.wait(job_id, timeout=120)
    html = httpx.get(f"{live_server.url}/ui/jobs/{job_id}", timeout=30).text
    for snippet, expect in (("snippet-opendps", "'status': 'successful'"), ("snippet-maap", "")):
        match = re.search(rf'<pre class="json" id="{snippet}">(.*?)</pre>', html, re.S)
        assert match, snippet
        code = htmllib.unescape(match.group(1))
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert expect in done.stdout, done.stdout
    jobs = live_server.client.list_jobs(tag="again")["jobs"]
    assert len(jobs) == 3  # the original and one from each snippet

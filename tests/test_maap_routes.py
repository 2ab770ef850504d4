"""Record and compare: every request each public maap-py 5.1.0 method sends is one this
server routes (never a 404 for a missing route, never a 405).

Every public method of ``MAAP``, ``maap.secrets``, ``maap.profile`` and ``maap.aws`` is
listed below, either with a call or with the reason it sends nothing to the MAAP API; a
method added to the client and missing here fails the test.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from starlette.routing import Match

from opendps.api.app import create_app
from tests.support.dps import fast_settings
from tests.support.maap_clients import checksum_repo, checksum_yaml, maap5, wait_built

pytestmark = pytest.mark.slow


@dataclass
class Context:
    pid: int
    spare_pid: int
    deployment_id: int
    yaml_path: str
    yaml_url: str
    job_id: str = ""


def _calls() -> dict[str, Callable[[Any, Context], Any]]:
    return {
        "list_algorithms": lambda m, c: m.list_algorithms(),
        "describe_algorithm": lambda m, c: m.describe_algorithm(c.pid),
        "deploy_algorithm": lambda m, c: m.deploy_algorithm(c.yaml_url),
        "deploy_algorithm_from_cwl_file": lambda m, c: m.deploy_algorithm_from_cwl_file(
            c.yaml_path
        ),
        "update_algorithm": lambda m, c: m.update_algorithm(c.pid, c.yaml_url),
        "replace_algorithm_from_cwl_file": lambda m, c: m.replace_algorithm_from_cwl_file(
            c.pid, c.yaml_path
        ),
        "get_algorithm_package": lambda m, c: m.get_algorithm_package(c.pid),
        "get_deployment_status": lambda m, c: m.get_deployment_status(c.deployment_id),
        "submit_job": lambda m, c: setattr(
            c,
            "job_id",
            m.submit_job(
                c.pid, {"input_file": c.yaml_url}, "maap-dps-worker-8gb", dedup=True, tag="record"
            ).json()["jobID"],
        ),
        "get_job_status": lambda m, c: m.get_job_status(c.job_id),
        "get_job_result": lambda m, c: m.get_job_result(c.job_id),
        "get_job_metrics": lambda m, c: m.get_job_metrics(c.job_id),
        "list_jobs": lambda m, c: (
            m.list_jobs(),
            m.list_jobs(
                process_id=c.pid,
                limit=5,
                get_job_details=False,
                offset=1,
                page_size=20,
                queue="dps-worker-8gb",
                status="job-completed",
                tag="record",
                min_duration=0,
                max_duration=100,
                type="process",
                datetime="2024-01-01T00:00:00Z/..",
                priority=5,
            ),
        ),
        "cancel_job": lambda m, c: (
            m.cancel_job(c.job_id),
            m.cancel_job(c.job_id, wait_for_completion=True),
        ),
        "get_queues": lambda m, c: m.get_queues(),
        "delete_algorithm": lambda m, c: m.delete_algorithm(c.spare_pid),
        "search_granule": lambda m, c: m.search_granule(short_name="GEDI02_A", limit=1),
        "search_collection": lambda m, c: m.search_collection(short_name="GEDI02_A", limit=1),
        "secrets.add_secret": lambda m, c: m.secrets.add_secret("s", "v"),
        "secrets.get_secrets": lambda m, c: m.secrets.get_secrets(),
        "secrets.get_secret": lambda m, c: m.secrets.get_secret("s"),
        "secrets.delete_secret": lambda m, c: m.secrets.delete_secret("s"),
        "profile.account_info": lambda m, c: m.profile.account_info(),
        "aws.requester_pays_credentials": lambda m, c: m.aws.requester_pays_credentials(),
        "aws.s3_signed_url": lambda m, c: m.aws.s3_signed_url("bucket", "a/key.h5"),
        "aws.earthdata_s3_credentials": lambda m, c: m.aws.earthdata_s3_credentials(
            "https://data.lpdaac.earthdatacloud.nasa.gov/s3credentials"
        ),
        "aws.workspace_bucket_credentials": lambda m, c: m.aws.workspace_bucket_credentials(),
    }


#: Public methods that send nothing to the MAAP API.
NO_API_REQUEST = {
    "upload_files": "uploads to S3 with boto3",
    "download_granule": "downloads from the granule's own URL",
    "show": "renders map tiles in a notebook",
    "get_call_from_cmr_uri": "generates code",
    "get_call_from_earthdata_query": "generates code",
}


def _public(obj: Any, prefix: str = "") -> list[str]:
    return [
        f"{prefix}{name}"
        for name, member in inspect.getmembers(type(obj))
        if not name.startswith("_") and callable(member)
    ]


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str, int, str]]]:
    """Every request ``requests`` sends: (method, url, status, body)."""
    sent: list[tuple[str, str, int, str]] = []
    original = requests.Session.send

    def send(self: requests.Session, request: requests.PreparedRequest, **kwargs: Any) -> Any:
        response = original(self, request, **kwargs)
        sent.append(
            (request.method or "", request.url or "", response.status_code, response.text[:300])
        )
        return response

    monkeypatch.setattr(requests.Session, "send", send)
    yield sent


def test_every_public_method_reaches_a_route(
    start_live_server: Callable[..., Any],
    make_algorithm_repo: Callable[..., Path],
    http_files: Any,
    tmp_path: Path,
    recorder: list[tuple[str, str, int, str]],
) -> None:
    server = start_live_server()
    maap = maap5(server.url)
    repo = checksum_repo(make_algorithm_repo)
    yaml_path = tmp_path / "algorithm_config.yaml"
    yaml_path.write_text(checksum_yaml(repo))
    http_files.add("algorithm_config.yaml", yaml_path.read_bytes())
    spare = tmp_path / "spare.yaml"
    spare.write_text(checksum_yaml(repo, name="spare"))
    deployed = maap.deploy_algorithm_from_cwl_file(str(yaml_path)).json()
    spare_pid = maap.deploy_algorithm_from_cwl_file(str(spare)).json()["processID"]
    wait_built(server.url, str(deployed["processID"]))
    context = Context(
        pid=deployed["processID"],
        spare_pid=spare_pid,
        deployment_id=deployed["deploymentJobID"],
        yaml_path=str(yaml_path),
        yaml_url=http_files.url("algorithm_config.yaml"),
    )

    calls = _calls()
    listed = (
        _public(maap.maap)
        + _public(maap.secrets, "secrets.")
        + _public(maap.profile, "profile.")
        + _public(maap.aws, "aws.")
    )
    recorder.clear()
    for name in listed:
        if name in calls or name in NO_API_REQUEST:
            continue
        # The camelCase methods of 4.x are stubs in 5.1.0 that raise without a request.
        with pytest.raises(Exception, match="no longer supported"):
            getattr(maap, name)()
    assert recorder == [], "a deprecated method sent a request"
    unlisted = sorted(set(calls) - set(listed))
    assert unlisted == [], f"methods not in maap-py 5.1.0: {unlisted}"

    called: dict[str, list[tuple[str, str, int, str]]] = {}
    for name, call in calls.items():
        before = len(recorder)
        try:
            call(maap, context)
        except Exception as exc:  # 501 for MAAP platform services: AWS raises, CMR can't parse
            assert name.startswith(("search_", "aws.")), f"{name} raised {exc!r}"
        called[name] = recorder[before:]

    app = create_app(fast_settings(tmp_path / "routes"), run_jobs=False)
    for name, requests_sent in called.items():
        assert requests_sent, f"{name} sent no request"
        for method, url, status, body in requests_sent:
            parts = urlsplit(url)
            assert f"{parts.scheme}://{parts.netloc}" == server.url, (name, url)
            assert status != 405, (name, method, url, body)
            assert not (status == 404 and "not an endpoint" in body), (name, method, url, body)
            scope = {"type": "http", "path": parts.path, "method": method, "root_path": ""}
            assert any(route.matches(scope)[0] == Match.FULL for route in app.routes), (
                f"{name}: {method} {parts.path} is not routed"
            )
    statuses = {name: [s for _, _, s, _ in sent] for name, sent in called.items()}
    assert statuses["submit_job"] == [202]
    assert statuses["cancel_job"][0] == 202
    assert statuses["aws.workspace_bucket_credentials"] == [501]

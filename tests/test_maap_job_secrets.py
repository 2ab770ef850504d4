"""maap-py inside a running job: ``MAAP().secrets.get_secret`` reaches this server as the
job's owner through ``MAAP_API_HOST`` and ``MAAP_PGT`` (DESIGN §4), and the job's token
stops working once the job has ended."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.maap_clients import (
    maap5,
    maap_users,
    secret_reader_repo,
    secret_reader_yaml,
    wait_built,
)

pytestmark = pytest.mark.slow
SECRET = "correct horse battery staple"


def test_job_reads_its_owners_secret(
    start_live_server: Callable[..., Any], make_algorithm_repo: Callable[..., Path], tmp_path: Path
) -> None:
    server = start_live_server(
        env={
            "DPS_AUTH": "true",
            "DPS_ALLOW_PRIVATE_URLS": "true",
            "DPS_ALLOW_LOCAL_REPOSITORIES": "true",
        }
    )
    users = maap_users(server.data_dir, "alice", "bob")
    alice, bob = maap5(server.url, users["alice"]), maap5(server.url, users["bob"])
    assert alice.secrets.add_secret("EARTHDATA", SECRET) == {"secret_name": "EARTHDATA"}
    assert bob.secrets.add_secret("EARTHDATA", "bob's, not alice's")["secret_name"]

    repo = secret_reader_repo(make_algorithm_repo)
    headers = {"proxy-ticket": users["alice"], "Content-Type": "application/json"}
    registered = httpx.post(
        f"{server.url}/api/mas/algorithm",
        headers=headers,
        timeout=30,
        content=json.dumps(secret_reader_yaml(repo)),
    )
    assert registered.status_code == 200, registered.text
    wait_built(server.url, "secret_reader:main", headers)

    # Inside the job's box only its work dir is writable: the token leaves as an output.
    submitted = alice.submit_job(
        "secret_reader:main",
        {"secret_name": "EARTHDATA", "token_file": "output/job-token.txt"},
        "dps-worker-8gb",
    )
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["jobID"]
    status = None
    for _ in range(600):
        status = alice.get_job_status(job_id).json()["status"]
        if status in ("successful", "failed", "dismissed"):
            break
        import time

        time.sleep(0.2)
    logs = httpx.get(f"{server.url}/jobs/{job_id}/logs", headers=headers, timeout=30).json()
    assert status == "successful", logs

    links = alice.get_job_result(job_id).json()["additionalProp1"]["links"]
    href = next(link["href"] for link in links if link.get("title") == "secret.sha256")
    digest = httpx.get(href, headers=headers, timeout=30).text
    assert digest == hashlib.sha256(SECRET.encode()).hexdigest()
    assert "user: alice" in logs["stdout"]
    assert SECRET not in logs["stdout"]  # the job printed it; the stored log masks it

    token_href = next(link["href"] for link in links if link.get("title") == "job-token.txt")
    token = httpx.get(token_href, headers=headers, timeout=30).text
    assert token and token not in (users["alice"], users["bob"])
    ended = httpx.get(
        f"{server.url}/api/members/self/secrets/EARTHDATA",
        timeout=30,
        headers={"proxy-ticket": token},
    )
    assert ended.status_code == 401
    assert ended.json()["code"] == 401 and "ended" in ended.json()["message"]

"""``dps user add|list|remove`` (DESIGN §11): the real CLI in subprocesses, writing the
database of a real ``dps server`` (auth on), whose answers to the printed tokens show what
the commands did."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support.live_server import LiveServer


def dps_user(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPS_")}
    return subprocess.run(
        [sys.executable, "-m", "opendps.cli", "user", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def token_of(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def me(server: LiveServer, token: str) -> httpx.Response:
    return httpx.get(f"{server.url}/api/members/self", headers=bearer(token), timeout=30)


def test_users_are_added_rekeyed_listed_and_removed(
    start_live_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    data = str(tmp_path / "server-data")  # the data dir start_live_server uses
    first = token_of(dps_user("add", "alice", "--data-dir", data))
    server = start_live_server(env={"DPS_AUTH": "true"})
    answer = me(server, first)
    assert answer.status_code == 200, answer.text
    assert answer.json()["username"] == "alice" and answer.json()["is_admin"] is False
    assert httpx.get(f"{server.url}/jobs", timeout=30).status_code == 401

    rekeyed = dps_user("add", "alice", "--admin", "--data-dir", data)
    second = token_of(rekeyed)
    assert "re-keyed" in rekeyed.stdout and second != first
    assert me(server, first).status_code == 401  # the old token ended
    assert me(server, second).json()["is_admin"] is True

    listed = dps_user("list", "--json", "--data-dir", data)
    assert listed.returncode == 0, listed.stderr
    assert [(u["name"], u["admin"], u["guest"]) for u in json.loads(listed.stdout)] == [
        ("alice", True, False)
    ]

    removed = dps_user("remove", "alice", "--data-dir", data)
    assert removed.returncode == 0, removed.stderr
    assert me(server, second).status_code == 401
    again = dps_user("remove", "alice", "--data-dir", data)
    assert again.returncode == 2 and "no user named 'alice'" in again.stderr


def test_config_file_and_guest_role(
    start_live_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    config = tmp_path / "dps.yml"
    config.write_text(f"data_dir: {tmp_path / 'server-data'}\nauth: true\n")
    token = token_of(dps_user("add", "gina", "--guest", "--config", str(config)))
    server = start_live_server(env={"DPS_AUTH": "true"})
    profile = me(server, token).json()
    assert profile["username"] == "gina" and profile["is_guest"] is True
    queues = httpx.get(
        f"{server.url}/api/mas/algorithm/resource", headers=bearer(token), timeout=30
    ).json()["queues"]
    assert queues == ["dps-sandbox"]  # the only guest queue of the defaults


def test_bad_names_and_roles_are_refused(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    for args, message in (
        (("add", "a/b"), "without '/'"),
        (("add", "anonymous"), "reserved"),
        (("add", "x", "--admin", "--guest"), "not both"),
    ):
        result = dps_user(*args, "--data-dir", data)
        assert result.returncode == 2 and message in result.stderr, result

"""``dps`` end to end: CLI commands against a real server subprocess, and run-local."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from opendps.cli import app
from opendps.cli.inputs import parse_inputs, read_batch_inputs
from opendps.executors.local_run import run_local
from tests.support.dps import wait_until
from tests.support.http_server import HttpFiles
from tests.support.live_server import LiveServer, free_port
from tests.support.run_log import RunLog
from tests.test_client import demo_algorithm, registered

runner = CliRunner()


def dps(server: LiveServer | None, *args: str) -> Result:
    env = {"DPS_URL": server.url if server else f"http://127.0.0.1:{free_port()}", "DPS_TOKEN": ""}
    return runner.invoke(app, list(args), env=env)


def as_json(result: Result) -> object:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# -- against a server -------------------------------------------------------------------


@pytest.mark.slow
def test_register_submit_wait_logs_outputs(
    live_server: LiveServer,
    make_algorithm_repo: Callable[..., Path],
    tmp_path: Path,
    http_files: HttpFiles,
) -> None:
    yaml_path = demo_algorithm(make_algorithm_repo, tmp_path)
    summary = as_json(dps(live_server, "algorithm", "register", str(yaml_path), "--wait", "--json"))
    assert summary["id"] == "demo:main" and summary["build"]["status"] == "ready"
    again = dps(live_server, "algorithm", "register", str(yaml_path))  # replaces by default
    assert again.exit_code == 0 and "registered demo:main" in again.stdout
    dps(live_server, "algorithm", "register", str(yaml_path), "--wait")

    http_files.add("a.txt", b"A")
    http_files.add("b.txt", b"B")
    result = dps(
        live_server,
        "job",
        "submit",
        "demo:main",
        "-i",
        "greeting=hi there",
        "-i",
        f"infile={http_files.url('a.txt')}",
        "-i",
        f"infile={http_files.url('b.txt')}",
        "--tag",
        "cli",
        "--priority",
        "8",
        "--wait",
    )
    assert result.exit_code == 0, result.output
    job_id = result.stdout.strip()  # the id alone on stdout; progress went to stderr
    assert len(job_id) == 36 and "successful" in result.stderr

    status = as_json(dps(live_server, "job", "status", job_id, "--json"))
    assert status["status"] == "successful" and status["priority"] == 8
    assert "successful" in dps(live_server, "job", "status", job_id).stdout
    logs = dps(live_server, "job", "logs", job_id)
    assert logs.stdout == "greeting=hi there code=0\n" and logs.stderr == "note: hi there\n"
    assert as_json(dps(live_server, "job", "logs", job_id, "--json"))["stderr"] == logs.stderr

    download = tmp_path / "out"
    outputs = as_json(
        dps(live_server, "job", "outputs", job_id, "--download", str(download), "--json")
    )
    assert {o["path"] for o in outputs["outputs"]} >= {"a.txt", "b.txt", "sub/nested.txt"}
    assert (download / "a.txt").read_bytes() == b"A"
    assert (download / "sub" / "nested.txt").exists()
    assert "greeting.txt" in dps(live_server, "job", "outputs", job_id).stdout

    metrics = as_json(dps(live_server, "job", "metrics", job_id, "--json"))
    assert metrics["localize"]["files"] == 2
    assert "ran" in dps(live_server, "job", "metrics", job_id).stdout

    listed = as_json(dps(live_server, "job", "list", "--tag", "cli", "--json"))
    assert [j["jobID"] for j in listed["jobs"]] == [job_id] and listed["numberMatched"] == 1
    table = dps(live_server, "job", "list", "--algorithm", "demo", "--status", "successful")
    assert job_id in table.stdout and "1 of 1" in table.stderr
    assert "demo:main" in {
        p["id"] for p in as_json(dps(live_server, "algorithm", "list", "--json"))
    }
    shown = as_json(dps(live_server, "algorithm", "show", "demo", "--json"))
    assert set(shown["inputs"]) == {"infile", "greeting", "code", "pause"}
    assert "greeting" in dps(live_server, "algorithm", "show", "demo:main").stdout
    assert "building" in dps(live_server, "algorithm", "build-log", "demo").stdout
    queues = as_json(dps(live_server, "queues", "--json"))
    assert "dps-worker-8gb" in {q["name"] for q in queues}
    assert "dps-sandbox" in dps(live_server, "queues").stdout


@pytest.mark.slow
def test_exit_codes_failed_jobs_cancel_and_server_errors(
    live_server: LiveServer, make_algorithm_repo: Callable[..., Path], tmp_path: Path
) -> None:
    yaml_path = demo_algorithm(make_algorithm_repo, tmp_path)
    registered(live_server, yaml_path)

    failed = dps(
        live_server, "job", "submit", "demo", "-i", "greeting=x", "-i", "code=3", "--wait", "--json"
    )
    assert failed.exit_code == 1
    info = json.loads(failed.stdout)
    assert (info["status"], info["reason"]) == ("failed", "exit_code")
    assert dps(live_server, "job", "wait", info["jobID"]).exit_code == 1
    assert dps(live_server, "job", "wait", info["jobID"], "--json").exit_code == 1

    # 4xx: the server's own detail, exit 2, no traceback.
    unknown = dps(live_server, "job", "submit", "demo", "-i", "greeting=x", "-i", "colour=red")
    assert unknown.exit_code == 2
    assert "unknown input(s) 'colour'" in unknown.stderr and "Traceback" not in unknown.output
    missing = dps(live_server, "job", "submit", "demo")
    assert missing.exit_code == 2 and "greeting" in missing.stderr
    assert dps(live_server, "algorithm", "show", "nothing").exit_code == 2
    duplicate = dps(live_server, "algorithm", "register", str(yaml_path), "--no-replace")
    assert duplicate.exit_code == 2 and "already registered" in duplicate.stderr
    bad_queue = dps(live_server, "job", "submit", "demo", "-i", "greeting=x", "--queue", "nope")
    assert bad_queue.exit_code == 2 and "unknown queue 'nope'" in bad_queue.stderr
    assert dps(live_server, "job", "status", "no-such-job").exit_code == 2

    # cancel a running job; waiting on it then exits 1
    submitted = dps(live_server, "job", "submit", "demo", "-i", "greeting=slow", "-i", "pause=60")
    job_id = submitted.stdout.strip()
    wait_until(
        lambda: live_server.client.status(job_id)["status"] == "running", 60, what="the job to run"
    )
    cancel = dps(live_server, "job", "cancel", job_id)
    assert cancel.exit_code == 0 and job_id in cancel.stdout
    waited = dps(live_server, "job", "wait", job_id, "--timeout", "60")
    assert waited.exit_code == 1 and "dismissed" in waited.stdout

    deleted = dps(live_server, "algorithm", "delete", "demo:main")
    assert deleted.exit_code == 0, deleted.output
    remaining = as_json(dps(live_server, "algorithm", "list", "--json"))
    assert "demo:main" not in {p["id"] for p in remaining}


@pytest.mark.slow
def test_follow_logs_streams_a_running_job(
    live_server: LiveServer, make_algorithm_repo: Callable[..., Path], tmp_path: Path
) -> None:
    registered(live_server, demo_algorithm(make_algorithm_repo, tmp_path))
    job_id = live_server.client.submit("demo", {"greeting": "live", "pause": 2})["jobID"]
    started = time.monotonic()
    followed = dps(live_server, "job", "logs", job_id, "--follow")
    assert followed.exit_code == 0, followed.output
    assert followed.stdout == "greeting=live code=0\n"
    assert followed.stderr == "note: live\n"
    assert time.monotonic() - started >= 1.5  # it waited for the job to end
    lines = dps(live_server, "job", "logs", job_id, "--follow", "--json").stdout.splitlines()
    assert {json.loads(line)["stream"] for line in lines} == {"stdout", "stderr"}


@pytest.mark.slow
def test_batches_from_csv_and_jsonl(
    live_server: LiveServer, make_algorithm_repo: Callable[..., Path], tmp_path: Path
) -> None:
    registered(live_server, demo_algorithm(make_algorithm_repo, tmp_path))
    csv_file = tmp_path / "jobs.csv"
    csv_file.write_text("greeting,code\none,0\ntwo,\nthree,0\n")
    result = dps(
        live_server, "batch", "submit", "demo", "--inputs", str(csv_file), "--tag", "csv", "--wait"
    )
    assert result.exit_code == 0, result.output
    batch_id = result.stdout.splitlines()[0]
    status = as_json(dps(live_server, "batch", "status", batch_id, "--json"))
    assert status["total"] == 3 and status["counts"]["successful"] == 3
    assert live_server.client.list_jobs(tag="csv")["numberMatched"] == 3

    jsonl = tmp_path / "jobs.jsonl"
    jsonl.write_text('{"greeting": "a"}\n\n{"greeting": "b", "code": 4}\n')
    failing = dps(
        live_server, "batch", "submit", "demo", "--inputs", str(jsonl), "--wait", "--json"
    )
    assert failing.exit_code == 1
    info = json.loads(failing.stdout)
    assert (info["counts"]["successful"], info["counts"]["failed"]) == (1, 1)
    retried = as_json(dps(live_server, "batch", "retry", info["batchID"], "--json"))
    assert len(retried["jobIDs"]) == 1
    assert retried["batchID"] == info["batchID"]  # the same batch, its failed job requeued
    assert dps(live_server, "batch", "status", retried["batchID"], "--wait").exit_code == 1

    slow = tmp_path / "slow.jsonl"
    slow.write_text('{"greeting": "s", "pause": 60}\n' * 2)
    batch_id = dps(live_server, "batch", "submit", "demo", "--inputs", str(slow)).stdout.strip()
    assert dps(live_server, "batch", "cancel", batch_id).exit_code == 0
    final = dps(live_server, "batch", "status", batch_id, "--wait", "--timeout", "60", "--json")
    assert final.exit_code == 1 and json.loads(final.stdout)["counts"]["dismissed"] == 2

    bad = tmp_path / "bad.csv"
    bad.write_text("greeting,colour\nx,red\n")
    rejected = dps(live_server, "batch", "submit", "demo", "--inputs", str(bad))
    assert rejected.exit_code == 2 and "colour" in rejected.stderr


# -- without a server -------------------------------------------------------------------


def test_unreachable_server_exits_3() -> None:
    result = dps(None, "job", "list")
    assert result.exit_code == 3
    assert "cannot reach the server" in result.stderr and "Traceback" not in result.output
    # the installed entry point, in a real process
    dead = f"http://127.0.0.1:{free_port()}"
    done = subprocess.run(
        [sys.executable, "-m", "opendps.cli", "job", "status", "x", "--url", dead],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3 and "cannot reach" in done.stderr
    assert "Traceback" not in done.stderr


def test_parse_inputs_and_batch_files(tmp_path: Path) -> None:
    assert parse_inputs(["a=1", "f=u1", "f=u2", "n:=2", 'o:={"k": [1]}', "e=", "eq=a=b"]) == {
        "a": "1",
        "f": ["u1", "u2"],
        "n": 2,
        "o": {"k": [1]},
        "e": "",
        "eq": "a=b",
    }
    for bad in (["novalue"], ["=x"], ["j:=nope"]):
        with pytest.raises(typer.BadParameter):
            parse_inputs(bad)
    assert dps(None, "job", "submit", "demo", "-i", "novalue").exit_code == 2

    csv_file = tmp_path / "x.csv"
    csv_file.write_text('name, urls\nA,"[""s3://b/1"", ""s3://b/2""]"\nB,\n')
    assert read_batch_inputs(csv_file) == [
        {"name": "A", "urls": '["s3://b/1", "s3://b/2"]'},
        {"name": "B"},
    ]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(typer.BadParameter):
        read_batch_inputs(empty)
    not_object = tmp_path / "list.jsonl"
    not_object.write_text("[1, 2]\n")
    with pytest.raises(typer.BadParameter):
        read_batch_inputs(not_object)


# -- run-local --------------------------------------------------------------------------


@pytest.mark.slow
def test_run_local_runs_and_reuses_the_build(
    make_algorithm_repo: Callable[..., Path], tmp_path: Path, run_log: RunLog
) -> None:
    yaml_path = demo_algorithm(make_algorithm_repo, tmp_path, build_counter=run_log)
    (tmp_path / "data.txt").write_text("local data\n")
    data_dir, out = tmp_path / "rl", tmp_path / "out1"
    args = [
        "run-local",
        str(yaml_path),
        "-i",
        "greeting=hey",
        "-i",
        f"infile={tmp_path / 'data.txt'}",
        "--data-dir",
        str(data_dir),
    ]

    started = time.monotonic()
    first = runner.invoke(app, [*args, "--output", str(out), "--json"])
    first_seconds = time.monotonic() - started
    info = json.loads(first.stdout)
    assert first.exit_code == 0, first.output
    assert info["status"] == "successful" and info["built"] is True
    assert (out / "data.txt").read_text() == "local data\n"
    assert (out / "greeting.txt").read_text() == "hey\n"
    assert (out / "sub" / "nested.txt").exists() and (out / "_stdout.txt").exists()
    assert info["stdout"] == "greeting=hey code=0\n"
    assert info["metrics"]["localize"]["files"] == 1

    started = time.monotonic()
    second = runner.invoke(app, [*args, "--output", str(tmp_path / "out2")])
    second_seconds = time.monotonic() - started
    assert second.exit_code == 0, second.output
    assert "reusing the build" in second.stderr and "successful" in second.stderr
    assert "greeting=hey" in second.stderr  # the stdout tail
    assert run_log.lines().count("built") == 1  # no rebuild
    assert second_seconds < first_seconds
    print(
        f"run-local: first (with build) {first_seconds:.2f} s, "
        f"second (cached build) {second_seconds:.2f} s"
    )

    rebuilt = run_local(
        yaml_path,
        {"greeting": "again"},
        data_dir=data_dir,
        output_dir=tmp_path / "out3",
        rebuild=True,
    )
    assert rebuilt.ok and rebuilt.built
    assert run_log.lines().count("built") == 2


@pytest.mark.slow
def test_run_local_failures(make_algorithm_repo: Callable[..., Path], tmp_path: Path) -> None:
    yaml_path = demo_algorithm(make_algorithm_repo, tmp_path)
    data_dir = str(tmp_path / "rl")
    failed = runner.invoke(
        app,
        [
            "run-local",
            str(yaml_path),
            "-i",
            "greeting=x",
            "-i",
            "code=5",
            "--data-dir",
            data_dir,
            "-o",
            str(tmp_path / "o"),
        ],
    )
    assert failed.exit_code == 1
    assert "failed (exit_code in run)" in failed.stderr
    assert (tmp_path / "o" / "_stderr.txt").read_text() == "note: x\n"  # failed jobs stage too

    bad_input = runner.invoke(
        app, ["run-local", str(yaml_path), "-i", "colour=red", "--data-dir", data_dir]
    )
    assert bad_input.exit_code == 2 and "colour" in bad_input.stderr

    broken = demo_algorithm(
        make_algorithm_repo,
        tmp_path,
        name="broken",
        build_script="#!/bin/bash\necho cannot build this >&2\nexit 7\n",
    )
    build_failed = runner.invoke(
        app, ["run-local", str(broken), "-i", "greeting=x", "--data-dir", data_dir]
    )
    assert build_failed.exit_code == 1
    assert "cannot build this" in build_failed.stderr  # the build log's tail
    assert "Traceback" not in build_failed.output

"""Campaigns through a real ``dps server`` (subprocess, real executor, supervisors and
runner): a 5,000-job CSV batch to the end with counts that always add up, cancel in the
middle, the CLI's glob submit, live wait and report."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from opendps.models import JobStatus
from tests.support.dps import algorithm_yaml, wait_until
from tests.support.live_server import LiveServer
from tests.support.s3_server import S3Server
from tests.test_cli import as_json, dps
from tests.test_client import registered

STATUSES = [s.value for s in JobStatus]
RUN_SH = '#!/bin/sh\n[ -n "$2" ] && sleep "$2"\nexit 0\n'
INPUTS = """  positional:
    - {name: n}
    - {name: pause, default: ""}
  file:
    - {name: granule, required: false, default: ""}
"""


@pytest.fixture
def campaign_server(start_live_server: Callable[..., LiveServer], tmp_path: Path) -> LiveServer:
    config = tmp_path / "dps.yml"
    config.write_text("queues:\n  - {name: camp, slots: 4, default: true}\n")
    return start_live_server(config=config)


def trivial(server: LiveServer, make_algorithm_repo: Callable[..., Path], tmp_path: Path) -> str:
    repo = make_algorithm_repo({"run.sh": RUN_SH}, executable=["run.sh"], name="trivial")
    path = tmp_path / "trivial.yml"
    path.write_text(algorithm_yaml(repo, name="trivial", inputs=INPUTS))
    return registered(server, path)


def counts_add_up(info: dict, total: int) -> dict:
    counts = info["counts"]
    assert set(counts) == set(STATUSES) and sum(counts.values()) == total == info["total"]
    return counts


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_a_5000_job_csv_batch_reaches_all_successful_with_counts_right_throughout(
    campaign_server: LiveServer, make_algorithm_repo: Callable[..., Path], tmp_path: Path
) -> None:
    client = campaign_server.client
    process_id = trivial(campaign_server, make_algorithm_repo, tmp_path)
    csv_file = tmp_path / "rows.csv"
    csv_file.write_text("n\n" + "".join(f"{i}\n" for i in range(5000)))
    batch = client.submit_batch_file(process_id, csv_file, tag="big")
    assert batch["total"] == 5000 and len(set(batch["jobIDs"])) == 5000
    done_before = 0
    deadline = time.monotonic() + 1400
    while True:
        info = client.batch_status(batch["batchID"])
        counts = counts_add_up(info, 5000)
        done = counts["successful"]
        assert done >= done_before and counts["failed"] == counts["dismissed"] == 0
        assert counts["running"] <= 4  # the queue's slots
        done_before = done
        if done == 5000:
            break
        assert time.monotonic() < deadline, f"not done: {counts}"
        time.sleep(2)
    stats = info["stats"]
    assert stats["rate_per_hour"] > 0 and stats["eta_seconds"] == 0
    assert stats["run_seconds"]["max"] >= stats["run_seconds"]["p50"] > 0
    assert client.list_jobs(batch=batch["batchID"], tag="big")["numberMatched"] == 5000
    report = client.batch_report(batch["batchID"])
    assert report["finished"] and report["counts"]["successful"] == 5000


@pytest.mark.slow
def test_cancel_in_the_middle_leaves_no_job_running_and_counts_add_up(
    campaign_server: LiveServer, make_algorithm_repo: Callable[..., Path], tmp_path: Path
) -> None:
    client = campaign_server.client
    process_id = trivial(campaign_server, make_algorithm_repo, tmp_path)
    batch = client.submit_batch(process_id, [{"n": str(i), "pause": "30"} for i in range(300)])
    batch_id = batch["batchID"]
    wait_until(
        lambda: client.batch_status(batch_id)["counts"]["running"] == 4, 60, what="4 running"
    )
    started = time.monotonic()
    cancelled = client.cancel_batch(batch_id)
    assert time.monotonic() - started < 2.0  # answers at once
    counts_add_up(cancelled, 300)

    def over() -> dict | None:
        info = client.batch_status(batch_id)
        counts = counts_add_up(info, 300)
        return counts if counts["running"] == counts["accepted"] == 0 else None

    counts = wait_until(over, 60, what="every job to end")
    assert counts["dismissed"] == 300  # type: ignore[index]
    run_commands = [p for p in campaign_server.processes() if "sleep" in " ".join(p.cmdline())]
    assert run_commands == []
    # The batch can be retried: the dismissed jobs go back, same ids.
    retried = client.retry_batch(batch_id, reasons=["cancelled"])
    assert sorted(retried["jobIDs"]) == sorted(batch["jobIDs"])
    client.cancel_batch(batch_id)


@pytest.mark.slow
def test_cli_glob_submit_wait_and_report(
    campaign_server: LiveServer, make_algorithm_repo: Callable[..., Path], tmp_path: Path
) -> None:
    process_id = trivial(campaign_server, make_algorithm_repo, tmp_path)
    granules = tmp_path / "granules"
    granules.mkdir()
    for name in ("a.tif", "b.tif", "c.tif", "notes.txt"):
        (granules / name).write_text(name)
    submitted = dps(
        campaign_server,
        "batch",
        "submit",
        process_id,
        "--input-glob",
        str(granules / "*.tif"),
        "--input-name",
        "granule",
        "-i",
        "n=7",
        "--json",
    )
    info = as_json(submitted)
    assert info["total"] == 3  # type: ignore[index]
    batch_id = info["batchID"]  # type: ignore[index]
    jobs = [campaign_server.client.status(j) for j in info["jobIDs"]]  # type: ignore[index]
    assert all(j["processID"] == process_id for j in jobs)
    waited = dps(campaign_server, "batch", "wait", batch_id)
    assert waited.exit_code == 0, waited.output
    assert "3 of 3 finished" in waited.stdout and "jobs/hour" in waited.stdout
    report = dps(campaign_server, "batch", "report", batch_id)
    assert report.exit_code == 0 and "successful  3" in report.stdout
    as_report = as_json(dps(campaign_server, "batch", "report", batch_id, "--json"))
    assert as_report["counts"]["successful"] == 3  # type: ignore[index]
    for job_id in info["jobIDs"]:  # type: ignore[index]
        assert campaign_server.client.metrics(job_id)["localize"]["files"] == 1  # its granule
    missing = dps(campaign_server, "batch", "submit", process_id, "--input-glob", "/nowhere/*.x")
    assert missing.exit_code == 2 and "--input-name" in missing.stderr


@pytest.mark.s3
def test_an_s3_glob_makes_one_job_per_matching_object(
    campaign_server: LiveServer,
    make_algorithm_repo: Callable[..., Path],
    tmp_path: Path,
    s3_server: S3Server,
) -> None:
    import uuid

    from opendps.client import expand_glob

    prefix = f"glob-{uuid.uuid4().hex[:8]}"
    fs = s3_server.filesystem()
    for name in ("granules/a.tif", "granules/b.tif", "granules/sub/c.tif", "granules/x.txt"):
        fs.pipe(f"{s3_server.bucket}/{prefix}/{name}", b"data")
    pattern = s3_server.url(f"{prefix}/granules/*.tif")
    options = s3_server.storage_options()
    assert expand_glob(pattern, options) == [
        s3_server.url(f"{prefix}/granules/a.tif"),
        s3_server.url(f"{prefix}/granules/b.tif"),
    ]
    process_id = trivial(campaign_server, make_algorithm_repo, tmp_path)
    batch = campaign_server.client.submit_glob(
        process_id, pattern, "granule", inputs={"n": "1"}, storage_options=options
    )
    assert batch["total"] == 2 and len(batch["jobIDs"]) == 2
    campaign_server.client.cancel_batch(batch["batchID"])

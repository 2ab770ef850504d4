"""Single submits over HTTP from one client: jobs/s of ``POST /processes/{id}/execution``
against a real ``dps server`` (jobs are accepted and stay queued: the server runs none, so
this times the submit path alone: HTTP, input validation, policy, the insert).

With ``--memory`` it also follows the server's RSS over a campaign of ``--jobs`` jobs
submitted in batches of ``--batch`` (``POST /batches``) and listed page by page, and
reports the store's bytes per job.

Run: ``nice python bench/submit_rate.py [--jobs 2000] [--backend sqlite|postgresql]
[--memory --jobs 100000]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _server import cpu_seconds, new_database, rss_bytes, start_server, stop_server

PROCESS = "hello-world"
ASYNC = {"Prefer": "respond-async"}


def submit_rate(base: str, pid: int, jobs: int) -> dict[str, Any]:
    with httpx.Client(base_url=base, timeout=60) as client:
        body = {"inputs": {"name": "bench"}}
        for _ in range(20):  # warm up
            client.post(f"/processes/{PROCESS}/execution", json=body, headers=ASYNC)
        started, cpu = time.perf_counter(), cpu_seconds(pid)
        for n in range(jobs):
            body = {"inputs": {"name": f"n{n}"}}
            response = client.post(f"/processes/{PROCESS}/execution", json=body, headers=ASYNC)
            if response.status_code != 201:
                raise RuntimeError(f"submit answered {response.status_code}: {response.text}")
        seconds = time.perf_counter() - started
        server_cpu = cpu_seconds(pid) - cpu
    # On a shared machine the wall-clock rate says how busy it was; the server's own CPU
    # time per submit says what one free core would sustain.
    return {
        "submits": jobs,
        "seconds": round(seconds, 2),
        "jobs_per_second": round(jobs / seconds),
        "server_cpu_ms_per_submit": round(server_cpu / jobs * 1000, 2),
        "jobs_per_second_per_server_core": round(jobs / server_cpu) if server_cpu else None,
    }


def campaign_memory(base: str, pid: int, jobs: int, batch: int) -> dict[str, Any]:
    """RSS of the server before, during and after submitting and listing ``jobs`` jobs."""
    samples: list[tuple[int, int]] = []
    with httpx.Client(base_url=base, timeout=600) as client:
        client.get("/jobs?limit=100").raise_for_status()
        start_rss = rss_bytes(pid)
        submitted = 0
        while submitted < jobs:
            n = min(batch, jobs - submitted)
            body = {
                "process": PROCESS,
                "jobs": [{"inputs": {"name": f"g{submitted + i}"}} for i in range(n)],
            }
            client.post("/batches", json=body).raise_for_status()
            submitted += n
            samples.append((submitted, rss_bytes(pid)))
        # walk the whole listing (a campaign dashboard paging through its jobs)
        url: str | None = "/jobs?limit=1000"
        pages = 0
        while url:
            page = client.get(url).raise_for_status().json()
            pages += 1
            url = next((link["href"] for link in page["links"] if link["rel"] == "next"), None)
        samples.append((submitted, rss_bytes(pid)))
    peak = max(r for _, r in samples)
    return {
        "campaign_jobs": jobs,
        "pages_listed": pages,
        "rss_start_mb": round(start_rss / 2**20, 1),
        "rss_peak_mb": round(peak / 2**20, 1),
        "rss_end_mb": round(samples[-1][1] / 2**20, 1),
        "rss_growth_mb": round((peak - start_rss) / 2**20, 1),
        "rss_by_jobs_mb": {
            n: round(r / 2**20, 1) for n, r in samples[:: max(1, len(samples) // 10)]
        },
    }


def finished_jobs(base: str, jobs: int, timeout: float = 900) -> dict[str, Any]:
    """Run ``jobs`` real hello-world jobs (one batch) to their end."""
    with httpx.Client(base_url=base, timeout=600) as client:
        body = {"process": PROCESS, "jobs": [{"inputs": {"name": f"f{n}"}} for n in range(jobs)]}
        batch = client.post("/batches", json=body).raise_for_status().json()
        started = time.perf_counter()
        while time.perf_counter() - started < timeout:
            counts = client.get(f"/batches/{batch['batchID']}").raise_for_status().json()["counts"]
            if counts["accepted"] + counts["running"] == 0:
                return {"finished_jobs": jobs, "counts": counts}
            time.sleep(1)
    raise RuntimeError(f"the batch did not finish within {timeout} s: {counts}")


def database_bytes(url: str) -> int:
    import sqlalchemy as sa

    if url.startswith("sqlite"):
        import sqlite3

        path = Path(url.split("///", 1)[1])
        with sqlite3.connect(path) as conn:  # the WAL's pages into the file first
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar())
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--memory", action="store_true", help="follow RSS over a campaign")
    parser.add_argument("--batch", type=int, default=5000, help="jobs per POST /batches")
    parser.add_argument(
        "--finished", action="store_true", help="run --jobs real jobs: store bytes per finished job"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dps-submit-") as tmp:
        root = Path(tmp)
        url, drop = new_database(args.backend, root)
        try:
            server, base = start_server(root / "dps", url, run_jobs=args.finished)
            try:
                empty = database_bytes(url)
                if args.finished:
                    result = finished_jobs(base, args.jobs)
                elif args.memory:
                    result = campaign_memory(base, server.pid, args.jobs, args.batch)
                else:
                    result = submit_rate(base, server.pid, args.jobs)
                grown = database_bytes(url) - empty
                result["store_bytes_per_job"] = round(grown / args.jobs)
            finally:
                stop_server(server)
        finally:
            drop()
    print(json.dumps({"backend": args.backend, **result}, indent=2))


if __name__ == "__main__":
    main()

"""Web UI page loads with 100,000 jobs in the store (target: every page < 300 ms).

Fills a SQLite store with ``--store-jobs`` jobs (in batches of 5,000, mixed statuses, seven
tags), starts ``dps server`` on it without running jobs, and times ``--requests`` loads of
each page from one client: the dashboard, the job list (plain, a status tile, a sort on
run time, a free-text search, a deep page), a job page, the batches list and a batch page,
queues, processes and secrets. Prints p50/p95 per page in ms as JSON.

Run: ``.venv/bin/python bench/ui_pages.py [--store-jobs 100000] [--requests 20]``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dispatch import free_port, start_server

STATUSES = ("successful", "successful", "successful", "failed", "dismissed")


def fill(data_dir: Path, store_jobs: int) -> tuple[str, str]:
    """The store with ``store_jobs`` jobs; answers one job id and one batch id."""
    import sqlalchemy as sa

    from opendps.models import BuildStatus
    from opendps.service.context import Services
    from opendps.settings import Settings
    from opendps.store import counts
    from opendps.store.tables import jobs

    services = Services(Settings(data_dir=data_dir))
    algorithm = services.catalog.save_algorithm(
        name="filler", version="1", owner="anonymous", spec={"name": "filler", "version": "1"},
        package=None, package_type=None, build_status=BuildStatus.READY,
    )  # fmt: skip
    job_id = batch_id = ""
    for start in range(0, store_jobs, 5000):
        batch = f"{start:08d}-0000-4000-8000-000000000000"
        created = services.job_store.create_batch_jobs(
            [
                {
                    "algorithm_id": algorithm.id,
                    "algorithm": "filler",
                    "version": "1",
                    "owner": "anonymous",
                    "queue": "bench",
                    "priority": n % 10,
                    "tags": [f"t{n % 7}"],
                    "inputs": {"n": n},
                }
                for n in range(start, min(start + 5000, store_jobs))
            ],
            batch_id=batch,
            owner="anonymous",
            process="filler:1",
        )
        job_id, batch_id = created[0][0], batch
    # Bench set-up only: end most jobs in one statement (the store's API ends one at a time).
    with services.db.write() as conn:
        for n, status in enumerate(STATUSES):
            conn.execute(
                jobs.update()
                .where(jobs.c.seq % 7 == n, jobs.c.seq % 11 != 0)
                .values(status=status, duration=jobs.c.seq % 300, finished=jobs.c.created)
            )
        counts.recount(conn)  # the statement above bypassed the maintained counters
    with services.db.read() as conn:
        counts = dict(
            conn.execute(sa.select(jobs.c.status, sa.func.count()).group_by(jobs.c.status)).all()
        )
    print(json.dumps({"filled": counts}), file=sys.stderr)
    services.close()
    return job_id, batch_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store-jobs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dps-bench-ui-") as tmp:
        data_dir = Path(tmp) / "dps"
        job_id, batch_id = fill(data_dir, args.store_jobs)
        port = free_port()
        server = start_server(data_dir, port, run_jobs=False)
        pages = {
            "dashboard": "/ui/",
            "jobs": "/ui/jobs",
            "jobs, failed tile": "/ui/jobs?status=failed",
            "jobs, by run time": "/ui/jobs?sort=-duration",
            "jobs, search": "/ui/jobs?q=t3",
            "job": f"/ui/jobs/{job_id}",
            "batches": "/ui/batches",
            "batch": f"/ui/batches/{batch_id}",
            "queues": "/ui/queues",
            "processes": "/ui/processes",
            "secrets": "/ui/secrets",
            "live refresh": "/ui/live/jobs?counts=1&top=1",
        }
        result: dict[str, dict[str, float]] = {}
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                first = client.get("/ui/jobs").text
                deep = re.search(r'href="(/ui/jobs\?next=[^"]+)"', first)
                if deep:
                    pages["jobs, page 2"] = deep.group(1).replace("&amp;", "&")
                for name, path in pages.items():
                    client.get(path).raise_for_status()  # warm up
                    times = []
                    for _ in range(args.requests):
                        t = time.perf_counter()
                        client.get(path).raise_for_status()
                        times.append((time.perf_counter() - t) * 1000)
                    times.sort()
                    result[name] = {
                        "p50_ms": round(statistics.median(times), 1),
                        "p95_ms": round(times[max(0, int(len(times) * 0.95) - 1)], 1),
                    }
        finally:
            server.terminate()
            server.wait(30)
    print(json.dumps({"store_jobs": args.store_jobs, "pages": result}, indent=2))


if __name__ == "__main__":
    main()

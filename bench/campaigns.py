"""Campaign figures (issue #12, DESIGN §14).

1. **Accept**: one ``POST /batches`` of N rows (default 100,000) of the built-in
   ``hello-world``, as JSON and as CSV, until the 201 (every row validated, jobs inserted);
   target <= 5 s. Also ``DELETE /batches/{id}`` of it (target: answers at once) and how
   long the background dismissals take (target < 60 s).
2. **Status with stats** at N jobs (the jobs are given finished states, run times and peak
   memory straight in the store): p50/p99 of ``GET /batches/{id}``; target < 50 ms.
3. **Fairness**: user A queues 2,000 jobs on a 2-slot queue, then user B queues one; how
   many slot turnovers (one of A's jobs ends, a claim follows) pass before B's job starts.
   Target: 1. Measured on the store's real claim (the same call every executor makes).

Run: ``.venv/bin/python bench/campaigns.py [--rows 100000] [--requests 200]``. Wall times
and the process's CPU time are printed (on a loaded machine the CPU time is the better
guide to an idle machine's wall time).
An in-process server (FastAPI TestClient, no executor), SQLite in a temporary data dir.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient

from opendps.api.app import create_app
from opendps.settings import QueueConfig, Settings
from opendps.store.db import utcnow
from opendps.store.tables import jobs

PROCESS = "hello-world"


def cpu_seconds() -> float:
    """CPU time of this process (server and client threads): on a loaded machine it is
    closer to what an idle machine's wall time would be than the wall time is."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def accept(client: TestClient, rows: int) -> dict[str, float | str]:
    body = {"process": PROCESS, "jobs": [{"inputs": {"name": f"n{i}"}} for i in range(rows)]}
    raw = json.dumps(body).encode()
    started, cpu = time.perf_counter(), cpu_seconds()
    answer = client.post("/batches", content=raw, headers={"Content-Type": "application/json"})
    json_seconds, json_cpu = time.perf_counter() - started, cpu_seconds() - cpu
    assert answer.status_code == 201, answer.text[:500]
    json_batch = answer.json()["batchID"]

    csv_text = "name\n" + "".join(f"n{i}\n" for i in range(rows))
    started, cpu = time.perf_counter(), cpu_seconds()
    answer = client.post(
        "/batches",
        params={"process": PROCESS},
        content=csv_text.encode(),
        headers={"Content-Type": "text/csv"},
    )
    csv_seconds, csv_cpu = time.perf_counter() - started, cpu_seconds() - cpu
    assert answer.status_code == 201, answer.text[:500]
    return {
        "json_s": json_seconds,
        "csv_s": csv_seconds,
        "json_cpu": json_cpu,
        "csv_cpu": csv_cpu,
        "json": json_batch,
        "csv": answer.json()["batchID"],
    }


def cancel(client: TestClient, batch_id: str) -> tuple[float, float]:
    started = time.perf_counter()
    answer = client.delete(f"/batches/{batch_id}")
    answered = time.perf_counter() - started
    assert answer.status_code == 200, answer.text
    while client.get(f"/batches/{batch_id}").json()["counts"]["accepted"]:
        time.sleep(0.2)
    return answered, time.perf_counter() - started


def finish_in_store(services, batch_id: str) -> None:  # type: ignore[no-untyped-def]
    """Give the batch's jobs realistic ends: 90% successful, the rest failed for a reason,
    run times and peak memory spread, finishing over the last hour."""
    now = utcnow()
    rng = random.Random(1)
    with services.db.write() as conn:
        seqs = list(
            conn.execute(sa.select(jobs.c.seq).where(jobs.c.batch_id == batch_id)).scalars()
        )
        values = []
        for seq in seqs:
            roll = rng.random()
            status, reason = ("successful", None)
            if roll > 0.9:
                status, reason = ("failed", rng.choice(["oom", "exit_code", "timeout"]))
            elif roll > 0.8:
                status, reason = ("running", None)
            finished = now - timedelta(seconds=rng.uniform(0, 3600))
            values.append(
                {
                    "s": seq,
                    "st": status,
                    "r": reason,
                    "d": rng.uniform(1, 600) if status != "running" else None,
                    "m": rng.randint(10**6, 8 * 10**9) if status != "running" else None,
                    "f": finished if status != "running" else None,
                }
            )
        conn.execute(
            jobs.update()
            .where(jobs.c.seq == sa.bindparam("s"))
            .values(
                status=sa.bindparam("st"),
                reason=sa.bindparam("r"),
                duration=sa.bindparam("d"),
                peak_memory=sa.bindparam("m"),
                finished=sa.bindparam("f"),
                message="an example",
            ),
            values,
        )


def status_latency(client: TestClient, batch_id: str, requests: int) -> tuple[float, float, float]:
    """p50 and p99 wall ms, and the mean CPU ms per request."""
    times = []
    cpu = cpu_seconds()
    for _ in range(requests):
        started = time.perf_counter()
        answer = client.get(f"/batches/{batch_id}")
        times.append(time.perf_counter() - started)
        assert answer.status_code == 200 and "stats" in answer.json()
    cpu_ms = (cpu_seconds() - cpu) / requests * 1000
    times.sort()
    return statistics.median(times) * 1000, times[int(len(times) * 0.99) - 1] * 1000, cpu_ms


def fairness(services, jobs_of_a: int = 2000) -> int:  # type: ignore[no-untyped-def]
    """Slot turnovers before B's job starts (A's jobs fill both slots first)."""
    from opendps.models import JobStatus

    store = services.job_store
    algorithm = services.algorithms.get(PROCESS)

    def spec(owner: str, priority: int) -> dict:
        return {
            "algorithm_id": algorithm.id,
            "algorithm": algorithm.name,
            "version": algorithm.version,
            "owner": owner,
            "queue": "fair",
            "priority": priority,
            "tags": [],
            "inputs": {"name": owner},
        }

    store.create_jobs([spec("alice", 9) for _ in range(jobs_of_a)])
    slots = {"fair": 2}
    running = [store.claim_next(slots, host="bench", worker="w") for _ in range(2)]
    (b_job,) = store.create_jobs([spec("bob", 0)])
    turnovers = 0
    while True:
        done = running.pop(0)
        store.transition(done.id, JobStatus.SUCCESSFUL, allowed_from=[JobStatus.RUNNING])
        turnovers += 1
        claimed = store.claim_next(slots, host="bench", worker="w")
        if claimed.id == b_job.id:
            return turnovers
        running.append(claimed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp) / "dps",
            queues=[
                QueueConfig(name="bench", slots=2, default=True),
                QueueConfig(name="fair", slots=2),
            ],
        )
        app = create_app(settings, run_jobs=False)
        with TestClient(app) as client:
            services = app.state.services
            figures = accept(client, args.rows)
            print(
                f"accept {args.rows} rows: JSON {figures['json_s']:.2f} s "
                f"({figures['json_cpu']:.2f} s CPU), CSV {figures['csv_s']:.2f} s "
                f"({figures['csv_cpu']:.2f} s CPU)"
            )
            answered, dismissed = cancel(client, str(figures["csv"]))
            print(
                f"cancel {args.rows}: answered in {answered * 1000:.0f} ms, "
                f"all dismissed in {dismissed:.1f} s"
            )
            finish_in_store(services, str(figures["json"]))
            p50, p99, cpu_ms = status_latency(client, str(figures["json"]), args.requests)
            print(
                f"GET /batches/{{id}} with stats at {args.rows} jobs: "
                f"p50 {p50:.1f} ms, p99 {p99:.1f} ms ({cpu_ms:.1f} ms CPU each)"
            )
            print(f"fairness: B's job started after {fairness(services)} slot turnover(s)")


if __name__ == "__main__":
    main()

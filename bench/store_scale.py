"""The store at scale: status and filtered listings (with ``numberMatched``) over HTTP,
with N jobs in SQLite or PostgreSQL.

The jobs are generated in bulk straight into the store's own schema (migrated by
``Database``): the jobs table's secondary indexes are dropped, rows go in with one
``executemany`` per chunk (SQLite) or ``COPY`` (PostgreSQL), the indexes are rebuilt from
``store/tables.py`` and the maintained counters are rebuilt with ``counts.recount`` (the
same function the migration backfills with). Then a real ``dps server`` (auth on, not
running jobs) answers the timed requests of one client.

Run: ``nice python bench/store_scale.py --backend sqlite|postgresql [--jobs 100000]``;
``--full`` = 10,000,000 jobs (long: run it once, on a quiet machine).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from _server import (
    QUEUES,
    cpu_seconds,
    new_database,
    percentiles,
    rss_bytes,
    start_server,
    stop_server,
)

OWNERS = [f"user-{n}" for n in range(20)]
ALGORITHMS = [f"algo-{n}" for n in range(10)]
BATCH_BLOCK = 10_000  # every other block of this many jobs is one batch of one owner
STATUSES = ["successful"] * 90 + ["failed"] * 5 + ["dismissed"] * 2 + ["accepted"] * 2
STATUSES += ["running"]
METRICS = json.dumps(
    {
        "cpu_seconds": 0.01,
        "peak_memory_bytes": 4_194_304,
        "bytes_in": 120,
        "bytes_out": 64,
        "phase_seconds": {"build": 0.006, "localize": 0.001, "run": 0.025, "stage": 0.005},
        "host": {"name": "bench", "cpus": 2},
    }
)
COLUMNS = [
    *("seq", "id", "algorithm_id", "algorithm", "version", "owner", "queue", "priority"),
    *("tags", "tag", "inputs", "status", "reason", "phase", "message", "batch_id"),
    *("attempts", "cancel_requested", "created", "started", "finished", "updated"),
    *("duration", "metrics"),
]
BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)


def job_row(seq: int, algorithm_ids: list[int], batch_of_block: dict[int, str]) -> tuple:
    block = seq // BATCH_BLOCK
    batch = batch_of_block.get(block)
    owner = OWNERS[block % len(OWNERS)] if batch else OWNERS[(seq // 13) % len(OWNERS)]
    status = STATUSES[seq % len(STATUSES)]
    a = (seq // 3) % len(ALGORITHMS)
    created = BASE_TIME + timedelta(seconds=seq * 0.01)
    ended = status in ("successful", "failed", "dismissed")
    started = created + timedelta(seconds=1) if status != "accepted" else None
    finished = created + timedelta(seconds=3) if ended else None
    tag = f"t{seq % 7}"
    return (
        seq,
        str(uuid.UUID(int=random.getrandbits(128), version=4)),
        algorithm_ids[a],
        ALGORITHMS[a],
        "1",
        owner,
        QUEUES[(seq // 7) % len(QUEUES)],
        seq % 10,
        f'["{tag}"]',
        tag,
        f'{{"granule": "G{seq}.h5", "n": {seq % 1000}}}',
        status,
        "exit_code" if status == "failed" else ("cancelled" if status == "dismissed" else None),
        "run" if status == "failed" else None,
        None,
        batch,
        1 if started else 0,
        False,
        created,
        started,
        finished,
        finished or started or created,
        2.0 if ended and started else None,
        METRICS if ended else None,
    )


def load(url: str, n: int, chunk: int = 50_000) -> dict[str, Any]:
    """Generate ``n`` jobs in bulk; answers timings, sample ids and batch ids."""
    from opendps.models import BuildStatus
    from opendps.store import CatalogStore, Database
    from opendps.store.counts import recount
    from opendps.store.tables import batches, jobs

    db = Database(url)
    catalog = CatalogStore(db)
    algorithm_ids = [
        catalog.save_algorithm(
            name=name,
            version="1",
            owner="user-0",
            spec={"name": name, "version": "1"},
            package=None,
            package_type=None,
            build_status=BuildStatus.READY,
        ).id
        for name in ALGORITHMS
    ]
    batch_of_block = {b: batch_id(b) for b in range(0, n // BATCH_BLOCK + 1, 2)}
    with db.write() as conn:
        conn.execute(
            batches.insert(),
            [
                {
                    "id": i,
                    "owner": OWNERS[b % len(OWNERS)],
                    "total": BATCH_BLOCK,
                    "created": BASE_TIME,
                }
                for b, i in batch_of_block.items()
            ],
        )
    indexes = list(jobs.indexes)
    with db.engine.begin() as conn:
        for index in indexes:
            conn.execute(sa.schema.DropIndex(index))
        if not db.is_sqlite:
            conn.exec_driver_sql("ALTER TABLE jobs DROP CONSTRAINT jobs_id_key")
    started = time.perf_counter()
    samples: list[str] = []
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        if db.is_sqlite:
            samples = _sqlite_generate(cursor, n, algorithm_ids)
        for start in range(1, n + 1, chunk) if not db.is_sqlite else ():
            rows = [
                job_row(s, algorithm_ids, batch_of_block)
                for s in range(start, min(start + chunk, n + 1))
            ]
            samples += [r[1] for r in rows[:: max(1, len(rows) // 50)]]
            with cursor.copy(f"COPY jobs ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row(r)
            raw.commit()
        raw.commit()
    finally:
        raw.close()
    inserted = time.perf_counter() - started
    started = time.perf_counter()
    with db.engine.begin() as conn:
        if not db.is_sqlite:
            conn.exec_driver_sql("ALTER TABLE jobs ADD CONSTRAINT jobs_id_key UNIQUE (id)")
            conn.exec_driver_sql(f"SELECT setval('jobs_seq_seq', {n})")
        for index in indexes:
            conn.execute(sa.schema.CreateIndex(index))
    indexed = time.perf_counter() - started
    started = time.perf_counter()
    with db.write() as conn:
        recount(conn)
    counted = time.perf_counter() - started
    with db.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.commit()
    size = _database_bytes(db)
    db.dispose()
    return {
        "jobs": n,
        "insert_seconds": round(inserted, 1),
        "insert_rows_per_second": round(n / inserted),
        "index_seconds": round(indexed, 1),
        "recount_seconds": round(counted, 1),
        "database_bytes": size,
        "bytes_per_job": round(size / n),
        "samples": samples,
        "batches": list(batch_of_block.values()),
    }


def batch_id(block: int) -> str:
    return f"{block:08x}-0000-4000-8000-000000000000"


def _sqlite_generate(cursor: Any, n: int, algorithm_ids: list[int]) -> list[str]:
    """SQLite makes the rows itself (the shapes of ``job_row``): Python could not feed it
    fast enough on a shared machine. Answers sample job ids."""
    assert algorithm_ids == list(range(algorithm_ids[0], algorithm_ids[0] + len(ALGORITHMS)))
    cursor.execute("PRAGMA journal_mode=OFF").fetchall()
    cursor.execute("PRAGMA synchronous=OFF")
    cursor.execute("PRAGMA cache_size=-1000000")
    for first in range(1, n + 1, 1_000_000):
        last = min(first + 1_000_000, n + 1) - 1
        cursor.execute("BEGIN")
        cursor.execute(SQLITE_ROWS, {"first": first, "last": last, "aid": algorithm_ids[0]})
        cursor.execute("COMMIT")
    seqs = ",".join(str(s) for s in range(1, n + 1, max(1, n // 2000)))
    cursor.execute(f"SELECT id FROM jobs WHERE seq IN ({seqs})")
    samples = [r[0] for r in cursor.fetchall()]
    cursor.execute("PRAGMA journal_mode=WAL").fetchall()
    return samples


def _sqlite_time(offset: str) -> str:
    # as the store writes timestamps: naive UTC text with microseconds
    return f"strftime('%Y-%m-%d %H:%M:%f', '2026-01-01', ({offset}) || ' seconds') || '000'"


_STATUS = (
    "CASE WHEN x % 100 < 90 THEN 'successful' WHEN x % 100 < 95 THEN 'failed' "
    "WHEN x % 100 < 97 THEN 'dismissed' WHEN x % 100 < 99 THEN 'accepted' ELSE 'running' END"
)
_ENDED = "x % 100 < 97"
_BATCHED = f"(x / {BATCH_BLOCK}) % 2 = 0"
SQLITE_ROWS = f"""
WITH RECURSIVE s(x) AS (SELECT :first UNION ALL SELECT x + 1 FROM s WHERE x < :last)
INSERT INTO jobs ({", ".join(COLUMNS)})
SELECT x,
  lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2)
    || '-a' || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6))),
  :aid + (x / 3) % 10, 'algo-' || ((x / 3) % 10), '1',
  CASE WHEN {_BATCHED} THEN 'user-' || ((x / {BATCH_BLOCK}) % 20)
       ELSE 'user-' || ((x / 13) % 20) END,
  'bench-' || char(97 + (x / 7) % 4),
  x % 10, '["t' || (x % 7) || '"]', 't' || (x % 7),
  '{{"granule": "G' || x || '.h5", "n": ' || (x % 1000) || '}}',
  {_STATUS},
  CASE WHEN x % 100 BETWEEN 90 AND 94 THEN 'exit_code'
       WHEN x % 100 BETWEEN 95 AND 96 THEN 'cancelled' END,
  CASE WHEN x % 100 BETWEEN 90 AND 94 THEN 'run' END,
  NULL,
  CASE WHEN {_BATCHED} THEN printf('%08x-0000-4000-8000-000000000000', x / {BATCH_BLOCK}) END,
  CASE WHEN x % 100 BETWEEN 97 AND 98 THEN 0 ELSE 1 END,
  0,
  {_sqlite_time("x * 0.01")},
  CASE WHEN x % 100 BETWEEN 97 AND 98 THEN NULL ELSE {_sqlite_time("x * 0.01 + 1")} END,
  CASE WHEN {_ENDED} THEN {_sqlite_time("x * 0.01 + 3")} END,
  {_sqlite_time("x * 0.01 + 3")},
  CASE WHEN {_ENDED} THEN 2.0 END,
  CASE WHEN {_ENDED} THEN '{METRICS}' END
FROM s
"""


def _database_bytes(db: Any) -> int:
    if db.is_sqlite:
        path = Path(db.url.split("///", 1)[1])
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    with db.engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar())


def measure(
    base: str, pid: int, tokens: dict[str, str], load_info: dict[str, Any], requests: int
) -> dict:
    """p50/p99 of each request shape; each listing must carry numberMatched."""
    samples, batches = load_info["samples"], load_info["batches"]
    # the newest hour of jobs (created 10 ms apart), as a dashboard would ask
    hour_ago = BASE_TIME + timedelta(seconds=load_info["jobs"] * 0.01 - 3600)
    since = hour_ago.strftime("%Y-%m-%dT%H:%M:%SZ")
    shapes: dict[str, tuple[str, str]] = {
        "GET /jobs/{id}": ("admin", ""),
        "GET /jobs (first page)": ("admin", "/jobs"),
        "GET /jobs?status=running": ("admin", "/jobs?status=running"),
        "GET /jobs?status=successful&queue=": (
            "admin",
            f"/jobs?status=successful&queue={QUEUES[1]}",
        ),
        "GET /jobs?processID=": ("admin", f"/jobs?processID={ALGORITHMS[3]}:1"),
        "GET /jobs?batch=": ("admin", f"/jobs?batch={batches[0]}"),
        "GET /jobs?status=failed as a user": ("user", "/jobs?status=failed"),
        "GET /jobs?datetime= (last hour)": ("admin", f"/jobs?datetime={since}/.."),
        "GET /batches/{id}": ("admin", f"/batches/{batches[0]}"),
    }
    results: dict[str, Any] = {}
    rng = random.Random(7)
    with httpx.Client(base_url=base, timeout=60) as client:
        for name, (who, path) in shapes.items():
            headers = {"Authorization": f"Bearer {tokens[who]}"}
            times: list[float] = []
            answer: dict[str, Any] = {}
            cpu = cpu_seconds(pid)
            for _ in range(requests):
                target = f"/jobs/{rng.choice(samples)}" if name == "GET /jobs/{id}" else path
                t = time.perf_counter()
                response = client.get(target, headers=headers)
                times.append((time.perf_counter() - t) * 1000)
                response.raise_for_status()
                answer = response.json()
            entry: dict[str, Any] = percentiles(times)
            # the server's own CPU per request: what the latency is made of on an idle core
            entry["server_cpu_ms"] = round((cpu_seconds(pid) - cpu) / requests * 1000, 2)
            if "jobs" in answer:
                entry["numberMatched"] = answer["numberMatched"]
                if "numberMatchedExact" in answer:
                    entry["numberMatchedExact"] = answer["numberMatchedExact"]
            results[name] = entry
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--full", action="store_true", help="10,000,000 jobs")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--dir", help="work folder (default: a temporary one)")
    args = parser.parse_args()
    n = 10_000_000 if args.full else args.jobs
    with tempfile.TemporaryDirectory(prefix="dps-store-", dir=args.dir) as tmp:
        root = Path(tmp)
        data_dir = root / "dps"
        url, drop = new_database(args.backend, root)
        try:
            info = load(url, n)
            tokens = _make_users(data_dir, url)
            server, base = start_server(data_dir, url, auth=True)
            try:
                rss_start = rss_bytes(server.pid)
                figures = measure(base, server.pid, tokens, info, args.requests)
                info["server_rss_mb"] = {
                    "started": round(rss_start / 2**20, 1),
                    "after_requests": round(rss_bytes(server.pid) / 2**20, 1),
                }
            finally:
                stop_server(server)
        finally:
            drop()
    info = {k: v for k, v in info.items() if k not in ("samples", "batches")}
    print(json.dumps({"backend": args.backend, **info, "requests": figures}, indent=2))


def _make_users(data_dir: Path, url: str) -> dict[str, str]:
    from opendps.service.context import Services
    from opendps.settings import Settings

    services = Services(Settings(data_dir=data_dir, database_url=url, auth=True))
    try:
        return {
            "admin": services.identity.create_user("bench-admin", is_admin=True),
            "user": services.identity.create_user(OWNERS[3]),
        }
    finally:
        services.close()


if __name__ == "__main__":
    main()

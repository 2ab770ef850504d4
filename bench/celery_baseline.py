"""The raw-Celery baseline of bench/dispatch.py: a plain Celery task doing the same per-job
work as the other baselines (work dir, run the script with its streams to files, copy
``output/``), with the settings long jobs need (acks_late, prefetch 1), no bookkeeping.

Started by the bench as ``celery -A celery_baseline worker`` (cwd bench/) against
``BENCH_BROKER``.
"""

from __future__ import annotations

import os

from celery import Celery
from dispatch import _baseline_job
from kombu import Queue

app = Celery("bench", broker=os.environ.get("BENCH_BROKER", "amqp://guest:guest@127.0.0.1//"))
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_queues=[
        Queue("bench-raw", routing_key="bench-raw", queue_arguments={"x-max-priority": 9})
    ],
    worker_hijack_root_logger=False,
)


@app.task(name="bench.job")
def bench_job(root: str, script: str, n: int) -> None:
    _baseline_job((root, script, n))

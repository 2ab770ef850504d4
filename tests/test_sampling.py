"""The memory/CPU series of a run: bounded, downsampled, saved while running, and served
in ``GET /jobs/{id}/metrics`` as ``samples`` (DESIGN §16)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from opendps.executors.local import LocalExecutor
from opendps.registry.spec import parse_registration
from opendps.runner.execute import execute
from opendps.runner.sampling import SampleRecorder, merge_pairs
from opendps.service.context import Services
from opendps.service.jobs import Submission
from opendps.settings import QueueConfig
from tests.support.dps import algorithm_yaml, fast_settings, wait_for_build, wait_for_job


class ManualClock:
    """A clock the test moves by hand (the recorder's only notion of time)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_recorder_keeps_one_point_per_interval_with_cpu_percent() -> None:
    clock = ManualClock()
    recorder = SampleRecorder(interval=1.0, clock=clock)
    for step in range(20):  # looks every 0.25 s, using half a CPU
        clock.now += 0.25
        recorder.observe(1000 + step, cpu_seconds=0.125 * (step + 1))
    points = recorder.samples
    assert len(points) == 5  # 5 s of looks, one point per second
    assert [p["t"] for p in points] == [0.25, 1.25, 2.25, 3.25, 4.25]
    assert all(p["cpu_percent"] == 50.0 for p in points[1:])
    assert points[-1]["rss_bytes"] == 1016


def test_recorder_stays_bounded_and_keeps_the_memory_peak() -> None:
    clock = ManualClock()
    recorder = SampleRecorder(interval=1.0, max_points=50, clock=clock)
    for step in range(10_000):
        clock.now += 1.0
        rss = 9_999_999 if step == 4321 else 1000
        recorder.observe(rss, cpu_seconds=float(step))
    assert len(recorder.samples) <= 50
    assert max(p["rss_bytes"] for p in recorder.samples) == 9_999_999
    times = [p["t"] for p in recorder.samples]
    assert times == sorted(times) and times[-1] > 9000  # the whole run, not its start


def test_merge_pairs_takes_highest_memory_and_mean_cpu() -> None:
    merged = merge_pairs(
        [
            {"t": 0, "rss_bytes": 5, "cpu_percent": 10.0},
            {"t": 1, "rss_bytes": 9, "cpu_percent": 30.0},
            {"t": 2, "rss_bytes": 1, "cpu_percent": 7.0},
        ]
    )
    assert merged == [
        {"t": 0, "rss_bytes": 9, "cpu_percent": 20.0},
        {"t": 2, "rss_bytes": 1, "cpu_percent": 7.0},
    ]


def test_recorder_saves_while_running_and_a_failing_save_is_harmless() -> None:
    clock = ManualClock()
    saved: list[int] = []

    def save(samples: list[dict]) -> None:
        saved.append(len(samples))
        if len(saved) == 1:
            raise OSError("database is locked")

    recorder = SampleRecorder(save, interval=1.0, flush_every=5.0, clock=clock)
    for _ in range(12):
        clock.now += 1.0
        recorder.observe(1, 0.0)
    assert saved == [5, 10]  # every 5 s, the first save failing quietly
    recorder.flush()
    assert saved[-1] == 12


def test_execute_reports_the_tree_memory_to_the_hook(tmp_path: Path) -> None:
    """A real process that holds ~60 MiB for a while: the looks see it."""
    looks: list[tuple[int, float]] = []
    # Busy until it has used 0.8 s of CPU (however loaded the machine is).
    script = "import time\nx = bytearray(60 * 1024 * 1024)\nwhile time.process_time() < 0.8: pass\n"
    result = execute(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
        stdout_path=tmp_path / "out",
        stderr_path=tmp_path / "err",
        sample_interval=0.1,
        on_sample=lambda rss, cpu: looks.append((rss, cpu)),
    )
    assert result.exit_code == 0
    assert len(looks) >= 5
    assert max(rss for rss, _ in looks) > 55 * 1024 * 1024
    cpu = [c for _, c in looks]
    assert cpu[-1] > 0.3 and cpu == sorted(cpu)  # CPU seconds so far, growing


@pytest.fixture
def dps(tmp_path: Path) -> Iterator[Services]:
    settings = fast_settings(
        tmp_path / "dps", queues=[QueueConfig(name="main", slots=1, memory="1GB", default=True)]
    )
    services = Services(settings)
    services.catalog.sync_queues(settings.queues)
    executor = LocalExecutor(services)
    executor.start()
    yield services
    executor.stop()
    services.close()


def test_a_job_run_stores_its_series_in_metrics(
    dps: Services, make_algorithm_repo: Callable[..., Path]
) -> None:
    run = (
        f"#!{sys.executable}\nimport time\nx = bytearray(40 * 1024 * 1024)\n"
        "t = time.time()\nwhile time.process_time() < 2 or time.time() - t < 3: pass\n"
    )
    repo = make_algorithm_repo({"run.py": run}, executable=["run.py"])
    spec = parse_registration(algorithm_yaml(repo, run="run.py"))
    pid = dps.algorithms.register(spec, owner="anonymous").process_id
    wait_for_build(dps, pid)
    job = wait_for_job(dps, dps.jobs.submit(Submission(pid, {}), owner="anonymous").id)
    assert job.status.value == "successful", job.message
    samples = dps.jobs.metrics(job.id, "anonymous")["samples"]
    assert 2 <= len(samples) <= 60  # about one a second over a run of 3 s or more
    assert set(samples[0]) == {"t", "rss_bytes", "cpu_percent"}
    assert max(s["rss_bytes"] for s in samples) > 35 * 1024 * 1024
    assert max(s["cpu_percent"] for s in samples) > 10  # busy, even on a crowded machine

"""Memory and CPU over a job's run: a bounded series of samples for the job page's chart.

The runner already looks at the job's process tree a few times a second (to find its
peak memory and CPU time, :mod:`opendps.runner.execute`); :class:`SampleRecorder` is
handed each of those looks and keeps one point about every ``interval`` seconds. The
series never grows past ``max_points``: when it is full, neighbouring points are merged
in pairs (the higher memory, the mean CPU) and the spacing doubles, so a week-long job
keeps a chart of the same size as a minute-long one, still showing its peaks.

While the job runs the series is saved every ``flush_every`` seconds, so the chart can be
followed live; a failing save never disturbs the job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

INTERVAL = 1.0  # seconds between kept points, at first
MAX_POINTS = 600  # points kept at most; beyond that, pairs merge and the spacing doubles
FLUSH_EVERY = 5.0  # seconds between saves while the job runs

Sample = dict[str, Any]  # {"t": seconds since the start, "rss_bytes": int, "cpu_percent": float}


def merge_pairs(samples: list[Sample]) -> list[Sample]:
    """Halve a series: each pair becomes one point at the first one's time, with the
    pair's highest memory (peaks stay visible) and mean CPU."""
    merged = []
    for i in range(0, len(samples), 2):
        pair = samples[i : i + 2]
        merged.append(
            {
                "t": pair[0]["t"],
                "rss_bytes": max(p["rss_bytes"] for p in pair),
                "cpu_percent": round(sum(p["cpu_percent"] for p in pair) / len(pair), 1),
            }
        )
    return merged


class SampleRecorder:
    """Turns the runner's looks at the process tree into a bounded, saved series."""

    def __init__(
        self,
        save: Callable[[list[Sample]], None] | None = None,
        *,
        interval: float = INTERVAL,
        max_points: int = MAX_POINTS,
        flush_every: float = FLUSH_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.save = save
        self.interval = interval
        self.max_points = max(2, max_points)
        self.flush_every = flush_every
        self.clock = clock
        self.samples: list[Sample] = []
        self._t0 = clock()
        self._last: tuple[float, float] | None = None  # (time, cpu seconds) of the last point
        self._saved_at = self._t0
        self._peak = 0  # highest RSS since the last kept point

    def observe(self, rss_bytes: int, cpu_seconds: float) -> None:
        """One look at the tree: its RSS sum and the CPU seconds it has used so far."""
        now = self.clock()
        # A look between two kept points still counts for memory: the next point shows the
        # highest RSS seen since the last one, so no peak falls between points.
        self._peak = max(self._peak, int(rss_bytes))
        if self._last is not None and now - self._last[0] < self.interval:
            return
        rss_bytes, self._peak = self._peak, 0
        if self._last is None:
            percent = 0.0
        else:
            spent = max(0.0, cpu_seconds - self._last[1])
            percent = 100.0 * spent / max(now - self._last[0], 1e-6)
        self._last = (now, cpu_seconds)
        self.samples.append(
            {
                "t": round(now - self._t0, 2),
                "rss_bytes": int(rss_bytes),
                "cpu_percent": round(percent, 1),
            }
        )
        if len(self.samples) > self.max_points:
            self.samples = merge_pairs(self.samples)
            self.interval *= 2
        if self.save is not None and now - self._saved_at >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Save the series as it is now (also called once the run has ended)."""
        self._saved_at = self.clock()
        if self.save is None or not self.samples:
            return
        try:
            self.save(list(self.samples))
        except Exception as exc:  # a store hiccup must not end supervision of a running job
            log.warning("saving samples failed: %s", exc, extra={"action": "samples_save_failed"})

"""A job's story for people: its timeline (queue waits apart from runs, one row per
attempt), why it failed in plain words, and whether a smaller queue would do.

Pure functions over the records the store already keeps (job, events, attempts, queues),
so every surface that explains a job (the web page today) says the same thing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opendps.models import Attempt, Job, JobStatus, Phase, Reason
from opendps.settings import QueueConfig

PHASE_WORDS = {
    Phase.BUILD: "while waiting for the algorithm's build",
    Phase.LOCALIZE: "while downloading its inputs",
    Phase.RUN: "while running",
    Phase.STAGE: "while uploading its outputs",
}
_HTTP_FAILURE = re.compile(r"download of (?P<url>\S+) failed: HTTP (?P<status>\d{3})(?P<rest>.*)")
HEADROOM = 1.25  # a queue "would do" when its memory is at least this much above the peak


# -- sizes and durations in words ----------------------------------------------------------


def size_words(value: float) -> str:
    """``8 GiB``, ``1.2 GiB``, ``512 MiB`` (whole numbers without decimals)."""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            text = f"{size:.1f}".removesuffix(".0")
            return f"{text} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover


def limit_words(seconds: float) -> str:
    """A time limit as an adjective: ``10-minute``, ``2-hour``, ``90-second``."""
    for unit, length in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= length and seconds % length == 0:
            return f"{int(seconds // length)}-{unit}"
    return f"{seconds:g}-second"


# -- why it failed ---------------------------------------------------------------------------


def explain(job: Job, queue: QueueConfig | None) -> str | None:
    """Why the job ended as it did, in a sentence; None while it has not ended badly."""
    if job.reason is None:
        return None
    message = (job.message or "").strip()
    where = PHASE_WORDS.get(job.phase, "") if job.phase else ""
    reason = job.reason
    if reason == Reason.LOCALIZE_ERROR:
        match = _HTTP_FAILURE.search(message)
        if match:
            rest = match.group("rest").strip()
            said = f" ({rest})" if rest else ""
            return (
                f"the input {match.group('url')} answered {match.group('status')}{said} "
                "while downloading"
            )
        return f"downloading its inputs failed: {message}" if message else "downloading failed"
    if reason == Reason.TIMEOUT:
        if queue is not None and queue.time_limit:
            return f"killed after the queue's {limit_words(queue.time_limit)} limit"
        return "killed after its time limit"
    if reason == Reason.OOM:
        if queue is not None and queue.memory:
            return f"used more than the queue's {size_words(queue.memory)} of memory"
        return "ran out of memory"
    if reason == Reason.EXIT_CODE:
        if job.exit_code is not None:
            return f"the run command ended with exit code {job.exit_code} (see stderr)"
        return message or "the run command failed"
    if reason == Reason.CANCELLED:
        return "cancelled before it started" if job.started is None else f"cancelled {where}"
    if reason == Reason.WORKER_LOST:
        return f"the worker running it was lost {where}".strip() + (
            f": {message}" if message else ""
        )
    if reason == Reason.BUILD_ERROR:
        return message or "the algorithm's build failed"
    if reason == Reason.UPLOAD_ERROR:
        return message or "uploading its outputs failed"
    if reason == Reason.INVALID_INPUT:
        return f"an input was refused: {message}" if message else "an input was refused"
    return message or reason.value  # pragma: no cover - every reason is handled above


# -- how much it needed ----------------------------------------------------------------------


def right_size(
    peak: int | None, queue: QueueConfig | None, queues: list[QueueConfig]
) -> str | None:
    """A hint like ``peak 1.2 GiB of 8 GiB: the 2 GiB queue would do``."""
    if not peak or queue is None or not queue.memory:
        return None
    head = f"peak {size_words(peak)} of {size_words(queue.memory)}"
    if peak > queue.memory * 0.9:
        bigger = sorted(
            (q for q in queues if q.memory and q.memory > queue.memory), key=lambda q: q.memory
        )
        if bigger:
            more = bigger[0]
            return f"{head}: close to the limit; {more.name} has {size_words(more.memory)}"
        return f"{head}: close to the limit"

    # Among queues of one size, prefer one whose time limit is no shorter than this one's.
    def shorter(q: QueueConfig) -> bool:
        return q.time_limit is not None and (queue.time_limit or 1e18) > q.time_limit

    smaller = sorted(
        (q for q in queues if q.memory and peak * HEADROOM <= q.memory < queue.memory),
        key=lambda q: (q.memory, shorter(q)),
    )
    if smaller:
        q = smaller[0]
        return f"{head}: the {size_words(q.memory)} queue would do ({q.name})"
    return f"{head} ({100 * peak / queue.memory:.0f}% of the queue's memory)"


# -- the timeline ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """One row of the timeline: a wait in the queue, or one attempt at running."""

    kind: str  # "wait" | "attempt"
    label: str
    start: datetime
    end: datetime | None  # None: still going
    seconds: float
    detail: str = ""
    current: bool = False


def _seconds(start: datetime, end: datetime | None, now: datetime) -> float:
    return max(0.0, ((end or now) - start).total_seconds())


def timeline(job: Job, attempts: list[Attempt], now: datetime | None = None) -> list[Span]:
    """Queue waits and attempts in order; each attempt is its own row."""
    now = now or datetime.now(UTC)
    spans: list[Span] = []
    waiting_since: datetime | None = job.created
    for attempt in attempts:
        if waiting_since is not None and attempt.started >= waiting_since:
            label = "Waiting in the queue" if not spans else "Waiting again (re-queued)"
            spans.append(
                Span(
                    "wait",
                    label,
                    waiting_since,
                    attempt.started,
                    _seconds(waiting_since, attempt.started, now),
                )
            )
        end = attempt.finished
        if end is None and job.status.terminal:
            end = job.finished
        detail = [f"on {attempt.host}"] if attempt.host else []
        if attempt.exit_code is not None:
            detail.append(f"exit code {attempt.exit_code}")
        spans.append(
            Span(
                "attempt",
                f"Attempt {attempt.number}",
                attempt.started,
                end,
                _seconds(attempt.started, end, now),
                ", ".join(detail),
                current=end is None,
            )
        )
        waiting_since = end
    if job.status == JobStatus.ACCEPTED and waiting_since is not None:
        label = "Waiting in the queue" if not spans else "Waiting again (re-queued)"
        spans.append(
            Span(
                "wait", label, waiting_since, None, _seconds(waiting_since, None, now), current=True
            )
        )
    elif not attempts and job.status.terminal and job.finished is not None:
        spans.append(
            Span(
                "wait",
                "Waiting in the queue",
                job.created,
                job.finished,
                _seconds(job.created, job.finished, now),
            )
        )
    return spans


def bar_segments(spans: list[Span], width: float = 1000.0) -> list[dict[str, Any]]:
    """The timeline as a proportional bar: x and width of each span in ``width`` units
    (every span at least 2 units wide, so a short wait still shows)."""
    total = sum(s.seconds for s in spans) or 1.0
    x = 0.0
    segments = []
    for span in spans:
        w = max(2.0, width * span.seconds / total)
        segments.append({"x": round(x, 1), "w": round(w, 1), "span": span})
        x += w
    scale = width / x if x > width else 1.0
    for seg in segments:
        seg["x"], seg["w"] = round(seg["x"] * scale, 1), round(seg["w"] * scale, 1)
    return segments

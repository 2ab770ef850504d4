"""The end-of-batch report (the NCCS ingest report): counts per status, rates, duration,
failures by reason with an example message each. One JSON shape (``GET
/batches/{id}/report``, ``dps batch report --json``) and one text rendering of it (the
batch's e-mail, ``dps batch report``). Pure functions: the CLI imports this module too."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from opendps.models import Batch

STATUSES = ("accepted", "running", "successful", "failed", "dismissed")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def build_report(batch: Batch, stats: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any]:
    first, last = facts.get("first_started"), facts.get("last_finished")
    done = sum(batch.counts.get(s, 0) for s in ("successful", "failed", "dismissed"))
    finished = done >= batch.total
    duration = None
    if finished and last is not None:
        duration = (last - batch.created).total_seconds()
    overall = None
    if duration:
        overall = round(done / duration * 3600.0, 1)
    return {
        "batchID": batch.id,
        "process": batch.process,
        "total": batch.total,
        "counts": {s: batch.counts.get(s, 0) for s in STATUSES},
        "finished": finished,
        "created": _iso(batch.created),
        "first_started": _iso(first),
        "last_finished": _iso(last),
        "duration_seconds": None if duration is None else round(duration, 1),
        "overall_rate_per_hour": overall,
        "stats": stats,
        "failures": [
            {"reason": reason, "count": count, "example": facts.get("examples", {}).get(reason)}
            for reason, count in sorted(stats.get("by_reason", {}).items(), key=lambda i: -i[1])
        ],
    }


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    value = float(value)
    if value < 120:
        return f"{value:.1f} s"
    hours, rest = divmod(int(value), 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def _bytes(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"


def render_text(report: dict[str, Any]) -> str:
    """The report as plain text (an e-mail body, a terminal)."""
    counts = report["counts"]
    stats = report.get("stats") or {}
    run = stats.get("run_seconds") or {}
    memory = stats.get("peak_memory_bytes") or {}
    state = "finished" if report.get("finished") else "in progress"
    lines = [
        f"Batch {report['batchID']} ({report.get('process') or '?'}): {state}",
        "",
        f"  jobs        {report['total']}",
        *(f"  {s:<11} {counts.get(s, 0)}" for s in STATUSES if counts.get(s, 0)),
        "",
        f"  started     {report.get('first_started') or '-'}",
        f"  ended       {report.get('last_finished') or '-'}",
        f"  duration    {_seconds(report.get('duration_seconds'))}",
        f"  rate        {report.get('overall_rate_per_hour') or stats.get('rate_per_hour') or 0}"
        " jobs/hour",
        f"  run time    p50 {_seconds(run.get('p50'))}  p95 {_seconds(run.get('p95'))}"
        f"  max {_seconds(run.get('max'))}",
        f"  peak memory p50 {_bytes(memory.get('p50'))}  max {_bytes(memory.get('max'))}",
    ]
    if not report.get("finished") and stats.get("eta_seconds") is not None:
        lines.append(f"  eta         {_seconds(stats['eta_seconds'])}")
    failures = report.get("failures") or []
    if failures:
        lines += ["", "Failures by reason:"]
        for failure in failures:
            lines.append(f"  {failure['reason']:<15} {failure['count']}")
            if failure.get("example"):
                lines.append(f"      e.g. {str(failure['example']).splitlines()[0][:200]}")
    return "\n".join(lines) + "\n"

"""The job page's memory and CPU chart: an inline SVG computed here, drawn by the template.

Coordinates are computed in Python (the page has no inline styles or scripts, CSP), so the
template only places polylines, the limit line, and labelled axes. Memory is drawn against
the left axis, CPU (percent of one core) against the right one.
"""

from __future__ import annotations

from typing import Any

from opendps.service.timeline import size_words

WIDTH, HEIGHT = 720.0, 220.0
LEFT, RIGHT, TOP, BOTTOM = 64.0, 52.0, 14.0, 30.0  # room for axis labels


def _nice_ceiling(value: float) -> float:
    """The smallest tidy number (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of
    ten) at or above ``value``: the top of an axis."""
    if value <= 0:
        return 1.0
    step = 1.0
    while step * 10 <= value:
        step *= 10
    while step > value:
        step /= 10
    for factor in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if step * factor >= value:
            return step * factor
    return step * 10  # pragma: no cover


def _nice_bytes(value: float) -> float:
    """A tidy top for the memory axis, in whole MiB or GiB steps."""
    unit = 1024.0**3 if value >= 1024**3 else 1024.0**2
    return _nice_ceiling(value / unit) * unit


def _time_label(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def memory_chart(samples: list[dict[str, Any]], memory_limit: int | None) -> dict[str, Any] | None:
    """Everything the template draws; None without at least one sample."""
    if not samples:
        return None
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    duration = max(float(samples[-1]["t"]), 1.0)
    peak = max(int(s["rss_bytes"]) for s in samples)
    # The limit is drawn when it is within reach (at most 4x the peak), else noted in words.
    limit_on_chart = bool(memory_limit) and memory_limit <= max(peak, 1) * 4
    highest = float(max(peak, memory_limit if limit_on_chart and memory_limit else 0))
    mem_top = _nice_bytes(highest * 1.05) if highest else 1.0
    cpu_top = _nice_ceiling(max(100.0, max(float(s["cpu_percent"]) for s in samples)))

    def x(t: float) -> float:
        return round(LEFT + plot_w * float(t) / duration, 1)

    def y(value: float, top: float) -> float:
        return round(TOP + plot_h * (1 - float(value) / top), 1)

    memory = " ".join(f"{x(s['t'])},{y(s['rss_bytes'], mem_top)}" for s in samples)
    cpu = " ".join(f"{x(s['t'])},{y(s['cpu_percent'], cpu_top)}" for s in samples)
    if len(samples) == 1:  # one point: draw a short flat line so it can be seen
        memory += f" {x(duration)},{y(samples[0]['rss_bytes'], mem_top)}"
        cpu += f" {x(duration)},{y(samples[0]['cpu_percent'], cpu_top)}"
    mem_ticks = [
        {"y": y(mem_top * f, mem_top), "label": size_words(mem_top * f)} for f in (0, 0.5, 1)
    ]
    cpu_ticks = [
        {"y": y(cpu_top * f, cpu_top), "label": f"{cpu_top * f:.0f}%"} for f in (0, 0.5, 1)
    ]
    time_ticks = [
        {"x": x(duration * f), "label": _time_label(duration * f)} for f in (0, 0.25, 0.5, 0.75, 1)
    ]
    limit = None
    if memory_limit and limit_on_chart:
        limit = {"y": y(memory_limit, mem_top), "label": f"queue limit {size_words(memory_limit)}"}
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "right": WIDTH - RIGHT,
        "top": TOP,
        "bottom": HEIGHT - BOTTOM,
        "memory": memory,
        "cpu": cpu,
        "mem_ticks": mem_ticks,
        "cpu_ticks": cpu_ticks,
        "time_ticks": time_ticks,
        "limit": limit,
        "limit_off_chart": bool(memory_limit) and not limit_on_chart,
        "memory_limit": memory_limit,
        "peak": peak,
        "points": len(samples),
        "duration": duration,
        "summary": (
            f"Sampled memory (RSS) peaked at {size_words(peak)}"
            + (f" of the queue's {size_words(memory_limit)}" if memory_limit else "")
            + f"; CPU peaked at {max(float(s['cpu_percent']) for s in samples):.0f}% of one core"
            + f", over {_time_label(duration)} ({len(samples)} samples)."
        ),
    }

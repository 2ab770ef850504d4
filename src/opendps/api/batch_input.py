"""Batch bodies -> one Submission per row: JSON (``{"process", "jobs": [...]}``), CSV
(header = input names, plus optional ``queue``, ``tag``, ``priority`` columns) and JSON
Lines (one ``{"inputs": {...}, "tag", "queue", "priority"}`` per line) — DESIGN §14.

Every row carries where it came from (data row, file line), so a refusal names the row, its
line and the column to fix.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opendps.api.bodies import check_depth
from opendps.api.ogc.inputs import decode_value
from opendps.errors import InvalidInput
from opendps.service.inputs import parse_priority
from opendps.service.jobs import Submission

MAX_BATCH = 100_000
ROW_FIELDS = ("queue", "tag", "priority")


@dataclass(frozen=True)
class Shared:
    """Values every row gets unless it sets its own (the JSON body's top level, or the
    query parameters of a CSV / JSON-lines upload)."""

    process: str
    queue: str | None = None
    tags: Sequence[str] = ()
    priority: int = 5
    dedup: bool = False


@dataclass(frozen=True)
class BatchRows:
    submissions: list[Submission]
    # where[i] = "row 7 (line 8)" for CSV / JSON lines, "jobs[6]" for JSON
    where: list[str] = field(default_factory=list)

    def label(self, index: int) -> str:
        return self.where[index] if self.where else f"job {index + 1}"


def _priority(value: Any, where: str, column: str = "priority") -> int:
    """The service's one priority rule (``true``, ``5.7``, ``null``, ``1e400`` refused),
    its message naming the row and the column."""
    try:
        return parse_priority(value)
    except InvalidInput as exc:
        raise InvalidInput(f"{where}, column {column!r}: {exc.message}", column=column) from None


def _submission(
    shared: Shared,
    inputs: Mapping[str, Any],
    where: str,
    row: Mapping[str, Any],
    *,
    text_cells: bool = False,
) -> Submission:
    """``text_cells``: a CSV row, where an empty cell means "not given"."""
    tag = row.get("tag")
    if tag is not None and not isinstance(tag, str):
        raise InvalidInput(f"{where}, column 'tag': a tag is a string; got {tag!r}", column="tag")
    queue = row.get("queue")
    if queue is not None and not isinstance(queue, str):
        raise InvalidInput(f"{where}, column 'queue': give a queue name; got {queue!r}")
    priority = shared.priority
    if "priority" in row and (row["priority"] != "" or not text_cells):
        priority = _priority(row["priority"], where)  # JSON null is refused, not "unset"
    return Submission(
        process_id=shared.process,
        inputs=inputs,
        queue=queue or shared.queue,
        priority=priority,
        tags=[*([tag] if tag else []), *shared.tags],
        dedup=shared.dedup,
    )


def _check_size(count: int) -> None:
    if count > MAX_BATCH:
        raise InvalidInput(f"a batch holds at most {MAX_BATCH} jobs; got {count}: split it")


def rows_from_csv(text: str, shared: Shared) -> BatchRows:
    """Header = input names (+ queue, tag, priority); an empty cell means 'not given'."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise InvalidInput("the CSV is empty: its first line names the inputs") from None
    except csv.Error as exc:
        raise InvalidInput(f"line 1 of the CSV: {exc}") from None
    if not any(header):
        raise InvalidInput("line 1 of the CSV must name the inputs (one per column)")
    duplicates = sorted({h for h in header if h and header.count(h) > 1})
    if duplicates:
        raise InvalidInput(f"line 1 of the CSV names column(s) twice: {', '.join(duplicates)}")
    submissions, where = [], []
    line = reader.line_num
    try:
        for cells in reader:
            start, line = line + 1, reader.line_num
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue  # blank lines are not rows
            label = f"row {len(submissions) + 1} (line {start})"
            if len(cells) > len(header):
                raise InvalidInput(
                    f"{label}: {len(cells)} cells but the header names {len(header)} columns"
                )
            values = {h: c for h, c in zip(header, cells, strict=False) if h and c != ""}
            extra = {k: values.pop(k) for k in ROW_FIELDS if k in values}
            submissions.append(_submission(shared, values, label, extra, text_cells=True))
            where.append(label)
            _check_size(len(submissions))
    except csv.Error as exc:
        raise InvalidInput(f"line {reader.line_num} of the CSV: {exc}") from None
    if not submissions:
        raise InvalidInput("the CSV has a header but no rows")
    return BatchRows(submissions, where)


def rows_from_ndjson(text: str, shared: Shared) -> BatchRows:
    """One ``{"inputs": {...}, "tag", "queue", "priority"}`` per line; a line without
    ``inputs`` is the inputs object itself."""
    submissions, where = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        label = f"row {len(submissions) + 1} (line {number})"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{label}: not JSON ({exc.msg}, column {exc.colno})") from None
        except RecursionError:
            raise InvalidInput(f"{label}: nested too deeply") from None
        check_depth(entry, label)
        if not isinstance(entry, dict):
            raise InvalidInput(f'{label}: expected an object, e.g. {{"inputs": {{...}}}}')
        submissions.append(_entry(shared, entry, label))
        where.append(label)
        _check_size(len(submissions))
    if not submissions:
        raise InvalidInput("the JSON-lines body has no rows")
    return BatchRows(submissions, where)


def rows_from_json(body: Any) -> tuple[Shared, BatchRows]:
    """``{"process", "jobs": [{"inputs": {...}, "tag", ...}], "queue", "priority", "tags",
    "dedup"}``."""
    if not isinstance(body, dict) or not body.get("process"):
        raise InvalidInput("a batch needs 'process' (name or name:version) and 'jobs'")
    entries = body.get("jobs")
    if not isinstance(entries, list) or not entries:
        raise InvalidInput("'jobs' must be a non-empty list of {\"inputs\": {...}} objects")
    _check_size(len(entries))
    tags = body.get("tags") or []
    if not isinstance(tags, list):
        tags = [tags]
    shared = Shared(
        process=str(body["process"]),
        queue=body.get("queue") or None,
        tags=[str(t) for t in tags],
        priority=_priority(body.get("priority", 5), "the batch", "priority"),
        dedup=_flag(body.get("dedup", False)),
    )
    submissions, where = [], []
    for n, entry in enumerate(entries):
        label = f"jobs[{n}]"
        if not isinstance(entry, dict):
            raise InvalidInput(f"{label} must be an object with 'inputs'")
        submissions.append(_entry(shared, entry, label))
        where.append(label)
    return shared, BatchRows(submissions, where)


def _entry(shared: Shared, entry: Mapping[str, Any], label: str) -> Submission:
    inputs = entry.get("inputs", {k: v for k, v in entry.items() if k not in ROW_FIELDS})
    if not isinstance(inputs, dict):
        raise InvalidInput(f"{label}: 'inputs' must be an object of input values")
    return _submission(
        shared, {k: decode_value(v, str(k)) for k, v in inputs.items()}, label, entry
    )


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes"}
    return bool(value)

"""A CSV table (uploaded or pasted on a process page) as the submissions of one batch.

The header names the inputs, plus optional ``queue``, ``tag`` and ``priority`` columns
(DESIGN §14); each data row is one job. Empty cells leave an input to its default.
Rows are checked here for shape only; the service validates the values of every row
before it creates any job.
"""

from __future__ import annotations

import csv
import io

from opendps.errors import InvalidInput
from opendps.registry.spec import AlgorithmSpec
from opendps.service.jobs import Submission

JOB_COLUMNS = ("queue", "tag", "priority")
MAX_ROWS = 100_000
MAX_BYTES = 32 * 1024 * 1024


def parse_table(
    text: str,
    spec: AlgorithmSpec,
    process_id: str,
    *,
    queue: str | None = None,
    tag: str = "",
    priority: int = 5,
) -> list[Submission]:
    """One submission per data row; a bad row is named with its line and column."""
    if not text.strip():
        raise InvalidInput("choose a CSV file or paste a table: a header of input names, then rows")
    if len(text.encode()) > MAX_BYTES:
        raise InvalidInput(f"the table is larger than {MAX_BYTES // (1024 * 1024)} MiB; split it")
    dialect = (
        "excel-tab" if "\t" in text.splitlines()[0] and "," not in text.splitlines()[0] else "excel"
    )
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")), dialect=dialect)
    header = [h.strip() for h in next(reader, [])]
    names = {i.name for i in spec.inputs}
    unknown = [h for h in header if h and h not in names and h not in JOB_COLUMNS]
    if unknown:
        known = ", ".join(sorted(names)) or "none"
        raise InvalidInput(
            f"line 1: column {unknown[0]!r} is neither an input of {process_id} "
            f"(inputs: {known}) nor one of {', '.join(JOB_COLUMNS)}"
        )
    if not any(h in names for h in header) and names:
        raise InvalidInput(
            f"line 1 must name the inputs in a header, e.g. {','.join(sorted(names))}"
        )
    submissions = []
    for line, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue  # blank lines
        if len(row) > len(header):
            raise InvalidInput(f"line {line}: {len(row)} cells but the header has {len(header)}")
        cells = dict(zip(header, (c.strip() for c in row), strict=False))
        row_priority = priority
        if cells.get("priority"):
            try:
                row_priority = int(cells["priority"])
            except ValueError:
                raise InvalidInput(
                    f"line {line}, column 'priority': {cells['priority']!r} is not a whole number"
                )
        row_tag = cells.get("tag") or tag
        submissions.append(
            Submission(
                process_id=process_id,
                inputs={k: v for k, v in cells.items() if k in names and v != ""},
                queue=cells.get("queue") or queue,
                priority=row_priority,
                tags=[row_tag] if row_tag else [],
            )
        )
        if len(submissions) > MAX_ROWS:
            raise InvalidInput(f"a batch holds at most {MAX_ROWS} jobs; split the table")
    if not submissions:
        raise InvalidInput("the table has a header but no rows")
    return submissions

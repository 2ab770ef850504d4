"""Job inputs from the command line (``-i NAME=VALUE``) and from batch files (CSV or
JSON lines)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import typer


def parse_inputs(pairs: list[str] | None) -> dict[str, Any]:
    """``-i NAME=VALUE`` pairs -> inputs; a repeated name collects a list; ``NAME:=JSON``
    decodes the value as JSON."""
    inputs: dict[str, Any] = {}
    for pair in pairs or []:
        name, sep, raw = pair.partition("=")
        value: Any = raw
        if name.endswith(":"):
            name = name[:-1]
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise typer.BadParameter(
                    f"{pair!r}: not JSON after ':=' ({exc})", param_hint="'-i'"
                ) from None
        if not sep or not name.strip():
            raise typer.BadParameter(f"{pair!r}: use NAME=VALUE", param_hint="'-i'")
        name = name.strip()
        if name in inputs:
            previous = inputs[name]
            inputs[name] = [*(previous if isinstance(previous, list) else [previous]), value]
        else:
            inputs[name] = value
    return inputs


def read_batch_inputs(path: Path) -> list[dict[str, Any]]:
    """A CSV file (header = input names, empty cells left out) or JSON lines (one inputs
    object per line) -> one inputs mapping per job."""
    text = path.read_text()
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise typer.BadParameter(f"{path}:{number}: not JSON ({exc})") from None
            if not isinstance(row, dict):
                raise typer.BadParameter(f"{path}:{number}: expected an object of inputs")
            rows.append(row)
    else:
        reader = csv.DictReader(text.splitlines())
        rows = []
        for number, row in enumerate(reader, 2):
            if None in row:
                raise typer.BadParameter(f"{path}:{number}: more cells than header names")
            rows.append({k.strip(): v for k, v in row.items() if k and v not in (None, "")})
    if not rows:
        raise typer.BadParameter(f"{path}: no jobs in it")
    return rows

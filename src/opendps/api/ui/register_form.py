"""The register form: every field of MAAP's Register Algorithm page, turned into the
equivalent MAAP algorithm YAML (shown beside the form, and what is registered).

The YAML is the single source of truth: the form is only another way to write it, so a
form registration and a pasted one go through the same parser and service call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

KINDS = ("file", "positional", "config")
DATA_TYPES = ("", "string", "number", "integer", "boolean", "file")
MIN_INPUT_ROWS = 3
MAX_INPUT_ROWS = 100
FIELDS = (  # (form name, YAML key, label, help)
    ("algorithm_name", "algorithm_name", "Name", "letters, digits, _ . -"),
    ("algorithm_version", "algorithm_version", "Version", "the git branch or tag to build"),
    ("repository_url", "repository_url", "Repository URL", "anything `git clone` accepts"),
    ("run_command", "run_command", "Run command", "relative to the clone's parent: repo/run.sh"),
    ("build_command", "build_command", "Build command", "optional; runs once at registration"),
    ("algorithm_description", "algorithm_description", "Description", ""),
    ("docker_container_url", "docker_container_url", "Container URL", "optional base image"),
    ("queue", "queue", "Queue", "the default queue of its jobs"),
    ("disk_space", "disk_space", "Disk space", "e.g. 5GB"),
)


def input_rows(form: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The input rows of the form (``input-<n>-<field>``), empty rows dropped."""
    rows = []
    count = min(int(_number(form.get("input_rows"), MIN_INPUT_ROWS)), MAX_INPUT_ROWS)
    for n in range(count):
        row = {
            "kind": str(form.get(f"input-{n}-kind") or "positional"),
            "name": str(form.get(f"input-{n}-name") or "").strip(),
            "description": str(form.get(f"input-{n}-description") or "").strip(),
            "default": str(form.get(f"input-{n}-default") or ""),
            "has_default": form.get(f"input-{n}-has_default") == "on",
            "required": form.get(f"input-{n}-required") == "on",
            "data_type": str(form.get(f"input-{n}-data_type") or ""),
        }
        if row["kind"] not in KINDS:
            row["kind"] = "positional"
        if row["data_type"] not in DATA_TYPES:
            row["data_type"] = ""
        rows.append(row)
    return rows


def _number(value: Any, default: int) -> int:
    try:
        return max(1, int(str(value)))
    except (TypeError, ValueError):
        return default


def to_yaml(form: Mapping[str, Any]) -> str:
    """The MAAP algorithm YAML the form describes (empty optional fields left out)."""
    document: dict[str, Any] = {}
    for name, key, _label, _help in FIELDS:
        value = str(form.get(name) or "").strip()
        if value:
            document[key] = value
    inputs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for row in input_rows(form):
        if not row["name"]:
            continue
        item: dict[str, Any] = {"name": row["name"]}
        if row["description"]:
            item["description"] = row["description"]
        # A default makes an input optional; "" is a default too, so a box says whether
        # the (possibly empty) default field counts.
        if row["default"] or row["has_default"]:
            item["default"] = row["default"]
        item["required"] = row["required"]
        if row["data_type"]:
            item["data_type"] = row["data_type"]
        inputs[row["kind"]].append(item)
    document["inputs"] = inputs
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False)


def blank_form(queue: str) -> dict[str, Any]:
    return {"algorithm_version": "main", "queue": queue, "input_rows": MIN_INPUT_ROWS}

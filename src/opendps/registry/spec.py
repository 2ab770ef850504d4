"""One validated model for every registration format (DESIGN §5).

``parse_registration`` takes the MAAP algorithm YAML, the legacy ADE YAML (as
text, or already parsed into a dict) and answers an :class:`AlgorithmSpec`, or
raises :class:`InvalidSpec` naming the field to fix.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from opendps.errors import InvalidSpec
from opendps.yamltext import load_yaml

InputKind = Literal["file", "positional", "config"]
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
# A version is one path segment of /processes/{name}:{version}, so no "/" (feature/x):
# register such a branch under a tag, or a commit hash.
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-+]*$")
NUMBER_TYPES = {"number", "float", "double", "int", "integer", "long"}


class InputSpec(BaseModel):
    """One declared input."""

    name: str
    kind: InputKind = "positional"
    description: str = ""
    default: Any = None
    required: bool | None = None
    data_type: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]*", value or ""):
            raise ValueError(f"{value!r} is not a valid input name (letters, digits, _ . -)")
        return value

    @property
    def mandatory(self) -> bool:
        """Mandatory iff it has no default (DESIGN §9 "Required inputs")."""
        return self.default is None and self.required is not False

    @property
    def is_number(self) -> bool:
        return (self.data_type or "").lower() in NUMBER_TYPES

    @property
    def is_integer(self) -> bool:
        return (self.data_type or "").lower() in {"int", "integer", "long"}


class AlgorithmSpec(BaseModel):
    """A registered algorithm, whatever format it came in."""

    name: str
    version: str
    description: str = ""
    repository_url: str | None = None
    run_command: str | None = None
    build_command: str | None = None
    docker_container_url: str | None = None
    queue: str | None = None
    disk_space: str | None = None
    inputs: list[InputSpec] = Field(default_factory=list)
    source_format: Literal["maap", "ade", "cwl", "builtin"] = "maap"
    # For CWL processes: the CWL document (JSON form) and the entry-point id.
    cwl: dict[str, Any] | None = None
    # For built-ins: the Python module that implements the process.
    builtin_module: str | None = None
    # OGC process description extras (outputs, jobControlOptions, ...), format-specific.
    ogc: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_PATTERN.fullmatch(value or ""):
            raise ValueError(f"{value!r} is not a valid algorithm name (letters, digits, _ . -)")
        return value

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if "/" in (value or ""):
            raise ValueError(
                f"{value!r}: a version cannot contain '/'; register a tag or a commit hash of "
                "that branch instead"
            )
        if not VERSION_PATTERN.fullmatch(value or "") or ".." in value:
            raise ValueError(f"{value!r} is not a valid version (a git branch, tag or commit)")
        return value

    @field_validator("run_command", "build_command")
    @classmethod
    def _relative_path(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        value = value.strip()
        command_path = value.split()[0]
        normal = posixpath.normpath(command_path)
        if command_path.startswith("/") or normal == ".." or normal.startswith("../"):
            raise ValueError(
                f"{value!r} escapes the repository; give a path relative to the folder that "
                "holds the cloned repository, e.g. my_repo/run.sh"
            )
        return value

    @property
    def process_id(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def repo_dir_name(self) -> str | None:
        """The folder the repository is cloned into: its last path segment, minus ``.git``."""
        return repo_dir_name(self.repository_url) if self.repository_url else None

    def inputs_of(self, kind: InputKind) -> list[InputSpec]:
        return [i for i in self.inputs if i.kind == kind]

    def input(self, name: str) -> InputSpec | None:
        return next((i for i in self.inputs if i.name == name), None)


def repo_dir_name(url: str) -> str:
    tail = url.rstrip("/").replace(":", "/").split("/")[-1]
    return tail[:-4] if tail.endswith(".git") else tail


def _parse_text(text: str | bytes) -> dict[str, Any]:
    data = load_yaml(text, "registration")
    if not isinstance(data, dict):
        raise InvalidSpec("the registration must be a mapping of fields (YAML or JSON object)")
    return data


def _maap_inputs(inputs: Any) -> list[dict[str, Any]]:
    if inputs is None:
        return []
    if isinstance(inputs, list):  # a flat list: MAAP UI variants and legacy ADE
        return [_legacy_input(i, n) for n, i in enumerate(inputs)]
    if not isinstance(inputs, dict):
        raise InvalidSpec("inputs: expected a mapping with file, positional and config lists")
    unknown = set(inputs) - {"file", "positional", "config"}
    if unknown:
        raise InvalidSpec(
            f"inputs: unknown group(s) {sorted(unknown)}; use file, positional, config"
        )
    result = []
    for kind in ("file", "positional", "config"):
        group = inputs.get(kind) or []
        if not isinstance(group, list):
            raise InvalidSpec(f"inputs.{kind}: expected a list of inputs")
        for n, item in enumerate(group):
            if not isinstance(item, dict) or "name" not in item:
                raise InvalidSpec(f"inputs.{kind}[{n}]: each input needs a name")
            result.append({**item, "kind": kind})
    return result


def _legacy_input(item: Any, n: int) -> dict[str, Any]:
    if not isinstance(item, dict) or "name" not in item:
        raise InvalidSpec(f"inputs[{n}]: each input needs a name")
    item = dict(item)
    download = item.pop("download", None)
    if "kind" not in item:
        item["kind"] = "file" if str(download).lower() == "true" else "positional"
    return item


def _first(data: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if data.get(key) not in (None, ""):
            return data[key]
    return None


def spec_from_mapping(data: dict[str, Any]) -> AlgorithmSpec:
    """MAAP algorithm YAML or legacy ADE YAML, already parsed."""
    legacy = "algo_name" in data and "algorithm_name" not in data
    fields = {
        "name": _first(data, "algorithm_name", "algo_name", "name", "id"),
        "version": _first(data, "algorithm_version", "version", "code_version"),
        "description": _first(data, "algorithm_description", "description") or "",
        "repository_url": _first(data, "repository_url", "code_repository", "repo_url"),
        "run_command": _first(data, "run_command", "script_command"),
        "build_command": _first(data, "build_command"),
        "docker_container_url": _first(data, "docker_container_url", "docker_url"),
        "queue": _first(data, "queue", "resource"),
        "disk_space": _first(data, "disk_space"),
        "inputs": _maap_inputs(data.get("inputs")),
        "source_format": "ade" if legacy else "maap",
    }
    for required, label in (
        ("name", "algorithm_name"),
        ("version", "algorithm_version"),
        ("repository_url", "repository_url"),
        ("run_command", "run_command"),
    ):
        if fields[required] in (None, ""):
            raise InvalidSpec(f"{label}: this field is required")
    fields["version"] = str(fields["version"])
    if fields["disk_space"] is not None:
        fields["disk_space"] = str(fields["disk_space"])
    names = [i["name"] for i in fields["inputs"]]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidSpec(f"inputs: duplicate input name(s) {duplicates}")
    try:
        return AlgorithmSpec(**fields)
    except ValidationError as exc:
        raise InvalidSpec(_describe(exc)) from exc


def parse_registration(body: str | bytes | dict[str, Any]) -> AlgorithmSpec:
    """Parse a MAAP or legacy ADE registration (YAML text, JSON text or a dict)."""
    data = body if isinstance(body, dict) else _parse_text(body)
    return spec_from_mapping(data)


_FIELD_LABELS = {"name": "algorithm_name", "version": "algorithm_version"}


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        loc = [str(p) for p in error["loc"]]
        if loc and loc[0] in _FIELD_LABELS:
            loc[0] = _FIELD_LABELS[loc[0]]
        where = ".".join(loc) if loc else "registration"
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)

"""CWL application packages -> AlgorithmSpec (OGC API - Processes Part 2, DESIGN §5).

Accepted bodies: a CWL document (``application/cwl``, ``+yaml``, ``+json``), a plain
``CommandLineTool`` or a ``$graph`` whose entry point is a ``Workflow`` (pick one with
``?w=``), or an OGC Application Package (``application/ogcapppkg+json``) whose
``executionUnit`` holds the CWL inline (``value``) or by reference (``href``). The document
is validated with cwltool, and its inputs and outputs are mapped to OGC descriptions
(reference §5.3):

========================  ============================================================
CWL                       OGC ``schema``
========================  ============================================================
boolean                   ``{"type": "boolean"}``
int, long                 ``{"type": "integer"}``
float, double             ``{"type": "number"}``
string                    ``{"type": "string"}``
enum                      ``{"type": "string", "enum": [...]}``
File, Directory           ``{"type": "string", "format": "uri"}`` (a URL or an ``href`` link)
T[]                       ``maxOccurs: "unbounded"`` with the schema of T
T? (or a default)         ``minOccurs: 0``
record                    ``{"type": "object", "properties": {...}}``
========================  ============================================================
"""

from __future__ import annotations

import json
import re
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from opendps.errors import InvalidSpec, UnsupportedMediaType
from opendps.registry.spec import AlgorithmSpec, InputSpec
from opendps.yamltext import load_yaml

PART2_EXCEPTIONS = "http://www.opengis.net/def/exceptions/ogcapi-processes-2/1.0/"
PROCESS_CLASSES = ("Workflow", "CommandLineTool", "ExpressionTool")
IANA_MEDIA_TYPES = (
    "https://www.iana.org/assignments/media-types/",
    "http://www.iana.org/assignments/media-types/",
)
SCHEMA_ORG = ("s:", "https://schema.org/", "http://schema.org/")
SCALARS: dict[str, dict[str, Any]] = {
    "boolean": {"type": "boolean"},
    "int": {"type": "integer", "format": "int32"},
    "long": {"type": "integer", "format": "int64"},
    "float": {"type": "number", "format": "float"},
    "double": {"type": "number", "format": "double"},
    "string": {"type": "string"},
    "File": {"type": "string", "format": "uri"},
    "Directory": {"type": "string", "format": "uri"},
    "stdout": {"type": "string", "format": "uri"},
    "stderr": {"type": "string", "format": "uri"},
    "Any": {},
}
DATA_TYPES = {
    "boolean": "boolean",
    "int": "integer",
    "long": "integer",
    "float": "number",
    "double": "number",
    "string": "string",
}
_VALIDATE_LOCK = threading.Lock()  # cwltool's loaders keep module-level state


class WorkflowNotFound(InvalidSpec):
    """The requested workflow is not in the application package."""

    ogc_type = PART2_EXCEPTIONS + "workflow-not-found"


# -- entry point ------------------------------------------------------------------------------


def spec_from_cwl(
    text: str,
    media: str,
    *,
    workflow: str | None = None,
    fetch: Callable[[str], str] | None = None,
) -> AlgorithmSpec:
    """Parse, validate and describe a CWL application package of the given media type.
    ``fetch`` gets the text of an ``executionUnit.href`` (the caller's URL policy);
    without it, hrefs are refused."""
    data = _load(text)
    overrides: dict[str, Any] = {}
    source: str | None = text  # validated as posted, so that errors give its line numbers
    if media == "application/ogcapppkg+json" or "executionUnit" in data:
        data, overrides = unwrap_app_package(data, fetch)
        source = None
    document = json.loads(json.dumps(data, default=str))  # YAML dates etc. -> plain JSON
    entry = select_entry(document, workflow)
    normalised = validate_cwl(document, entry.get("id"), source)
    return _spec(document, entry, normalised, overrides)


def _load(text: str) -> dict[str, Any]:
    data = load_yaml(text, "CWL document")
    if not isinstance(data, dict):
        raise InvalidSpec("the CWL document must be a mapping (a CWL process or a $graph)")
    return data


# -- OGC Application Package ------------------------------------------------------------------


def unwrap_app_package(
    package: dict[str, Any], fetch: Callable[[str], str] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``{"executionUnit": ..., "processDescription": ...}`` -> (CWL document, overrides)."""
    unit = package.get("executionUnit")
    if isinstance(unit, list):  # several units (Weaver's form): the first CWL one
        unit = next((u for u in unit if isinstance(u, dict)), None)
    if not isinstance(unit, dict):
        raise InvalidSpec(
            'executionUnit: give the CWL inline ({"value": ...}) or by reference ({"href": ...})'
        )
    if "unit" in unit and isinstance(unit["unit"], dict):  # Weaver's legacy form
        unit = unit["unit"]
    if "cwlVersion" in unit or "$graph" in unit:
        document: Any = unit
    elif isinstance(unit.get("href"), str):
        if fetch is None:
            raise InvalidSpec("executionUnit.href: give the CWL inline; hrefs are not fetched here")
        document = _load(fetch(unit["href"]))
    elif "value" in unit:
        value = unit["value"]
        document = _load(value) if isinstance(value, str) else value
    elif str(unit.get("type", "")).lower() in ("docker", "oci"):
        raise InvalidSpec(
            "Docker execution units are not supported; deploy a CWL application package "
            "(application/cwl+yaml, or an executionUnit holding CWL)"
        )
    else:
        raise InvalidSpec("executionUnit: expected 'href', 'value' or an inline CWL document")
    if not isinstance(document, dict):
        raise InvalidSpec("executionUnit: the CWL document must be a mapping")
    described = package.get("processDescription") or {}
    if isinstance(described, dict) and isinstance(described.get("process"), dict):
        described = described["process"]
    return document, described if isinstance(described, dict) else {}


# -- choosing the entry point -----------------------------------------------------------------


def _bare(identifier: Any) -> str:
    return str(identifier or "").split("#")[-1]


def select_entry(document: dict[str, Any], workflow: str | None) -> dict[str, Any]:
    """The process to run: ``?w=`` if given, else the only Workflow of a ``$graph``."""
    wanted = _bare(workflow) if workflow else None
    if "$graph" in document:
        graph = document["$graph"]
        if not isinstance(graph, list):
            raise InvalidSpec("$graph must be a list of CWL processes")
        processes = [p for p in graph if isinstance(p, dict) and p.get("class") in PROCESS_CLASSES]
        ids = ", ".join(_bare(p.get("id")) or "?" for p in processes) or "none"
        if wanted:
            found = [p for p in processes if _bare(p.get("id")) == wanted]
            if not found:
                raise WorkflowNotFound(f"no process {wanted!r} in the $graph (it holds: {ids})")
            return found[0]
        workflows = [p for p in processes if p.get("class") == "Workflow"]
        candidates = workflows or processes
        if len(candidates) == 1:
            return candidates[0]
        mains = [p for p in candidates if _bare(p.get("id")) == "main"]
        if len(mains) == 1:
            return mains[0]
        raise WorkflowNotFound(
            f"the $graph holds {len(candidates)} candidate entry points ({ids}); "
            "choose one with ?w=<id>"
        )
    if document.get("class") not in PROCESS_CLASSES:
        raise InvalidSpec(
            f"class: expected one of {', '.join(PROCESS_CLASSES)} (or a $graph); "
            f"got {document.get('class')!r}"
        )
    if wanted and _bare(document.get("id")) != wanted:
        raise WorkflowNotFound(
            f"the document's process is {_bare(document.get('id'))!r}, not {wanted!r}"
        )
    return document


# -- validation with cwltool ------------------------------------------------------------------


def validate_cwl(
    document: dict[str, Any], entry_id: str | None, source: str | None = None
) -> dict[str, Any]:
    """Load the document (``source``: its text as written, else it is dumped as YAML) with
    cwltool, which checks the schema and every reference; answers the entry point in
    cwltool's normalised form (full ids, expanded types)."""
    try:
        from cwltool.context import LoadingContext
        from cwltool.load_tool import load_tool
        from cwltool.workflow import default_make_tool
    except ImportError:
        from opendps.service.packages import CWL_MISSING

        raise UnsupportedMediaType(CWL_MISSING) from None
    with tempfile.TemporaryDirectory(prefix="dps-cwl-") as folder:
        path = Path(folder) / "package.cwl"
        path.write_text(source if source is not None else yaml.safe_dump(document, sort_keys=False))
        uri = path.as_uri() + (f"#{_bare(entry_id)}" if entry_id else "")
        context = LoadingContext(
            {"construct_tool_object": default_make_tool, "disable_js_validation": True}
        )
        try:
            with _VALIDATE_LOCK:
                tool = load_tool(uri, context)
        except Exception as exc:  # schema-salad / cwltool validation errors
            message = re.sub(r"[^\s'\"]*package\.cwl", "package.cwl", str(exc))
            message = re.sub(r"\x1b\[[0-9;]*m", "", message)
            message = re.sub(r"\s+", " ", message).strip()
            raise InvalidSpec(f"the CWL document is invalid: {message}") from None
        return dict(tool.tool)


# -- mapping ----------------------------------------------------------------------------------


def _short(identifier: str) -> str:
    """``file:///x/package.cwl#main/mode/a`` -> ``a``; ``#main/text`` -> ``text``."""
    return identifier.split("#")[-1].split("/")[-1]


def media_type_of_format(fmt: Any) -> str | None:
    for prefix in IANA_MEDIA_TYPES:
        if isinstance(fmt, str) and fmt.startswith(prefix):
            return fmt[len(prefix) :]
    return None


def type_schema(cwl_type: Any) -> tuple[dict[str, Any], bool, bool]:
    """CWL type (normalised) -> (OGC schema of one value, optional, many)."""
    if isinstance(cwl_type, list):
        options = [t for t in cwl_type if t != "null"]
        optional = len(options) < len(cwl_type)
        if len(options) == 1:
            schema, _, many = type_schema(options[0])
            return schema, optional, many
        return {"oneOf": [type_schema(t)[0] for t in options]}, optional, False
    if isinstance(cwl_type, dict):
        kind = cwl_type.get("type")
        if kind == "array":
            item, _, nested = type_schema(cwl_type.get("items"))
            return ({"type": "array", "items": item} if nested else item), False, True
        if kind == "enum":
            return (
                {"type": "string", "enum": [_short(s) for s in cwl_type.get("symbols", [])]},
                False,
                False,
            )
        if kind == "record":
            properties = {}
            for field in cwl_type.get("fields", []):
                properties[_short(field.get("name", ""))] = type_schema(field.get("type"))[0]
            return {"type": "object", "properties": properties}, False, False
        return type_schema(kind)
    if isinstance(cwl_type, str):
        return dict(SCALARS.get(_short(cwl_type), {})), False, False
    return {}, False, False


def _base_type(cwl_type: Any) -> str | None:
    """The item type name: ``File`` for File, File?, File[]."""
    if isinstance(cwl_type, list):
        options = [t for t in cwl_type if t != "null"]
        return _base_type(options[0]) if len(options) == 1 else None
    if isinstance(cwl_type, dict):
        return _base_type(cwl_type.get("items")) if cwl_type.get("type") == "array" else None
    return _short(cwl_type) if isinstance(cwl_type, str) else None


def _declared_order(entry: dict[str, Any], member: str) -> list[str]:
    """Ids of ``inputs``/``outputs`` in the order the author wrote them (map or list)."""
    declared = entry.get(member) or []
    if isinstance(declared, dict):
        return [_bare(k) for k in declared]
    return [_bare(item.get("id")) for item in declared if isinstance(item, dict)]


def _ordered(
    entry: dict[str, Any], normalised: dict[str, Any], member: str
) -> list[tuple[str, dict[str, Any]]]:
    items = {_short(item["id"]): item for item in normalised.get(member, [])}
    order = [n for n in _declared_order(entry, member) if n in items]
    return [(n, items[n]) for n in order + sorted(set(items) - set(order))]


def _describe_io(name: str, item: dict[str, Any]) -> tuple[dict[str, Any], bool, bool]:
    schema, optional, many = type_schema(item.get("type"))
    media = media_type_of_format(item.get("format"))
    if media and schema.get("format") == "uri":
        schema["contentMediaType"] = media
    description = item.get("doc") or ""
    if isinstance(description, list):
        description = "\n".join(str(d) for d in description)
    return (
        {"title": item.get("label") or name, "description": str(description), "schema": schema},
        optional,
        many,
    )


def _default_value(value: Any) -> Any:
    if isinstance(value, dict) and value.get("class") in ("File", "Directory"):
        location = value.get("location") or value.get("path")
        return location if isinstance(location, str) and "://" in location else None
    return value


def _metadata(document: dict[str, Any], entry: dict[str, Any], *names: str) -> Any:
    for holder in (entry, document):
        for name in names:
            for prefix in SCHEMA_ORG:
                value = holder.get(prefix + name)
                if value not in (None, ""):
                    return value
    return None


def _docker_image(document: dict[str, Any]) -> str | None:
    for process in document.get("$graph", [document]):
        if not isinstance(process, dict):
            continue
        for member in ("requirements", "hints"):
            block = process.get(member) or []
            items = block.values() if isinstance(block, dict) else block
            if isinstance(block, dict) and isinstance(block.get("DockerRequirement"), dict):
                return block["DockerRequirement"].get("dockerPull")
            for item in items:
                if isinstance(item, dict) and item.get("class") == "DockerRequirement":
                    return item.get("dockerPull")
    return None


def _spec(
    document: dict[str, Any],
    entry: dict[str, Any],
    normalised: dict[str, Any],
    overrides: dict[str, Any],
) -> AlgorithmSpec:
    name = str(overrides.get("id") or _bare(entry.get("id")) or "")
    if not name:
        raise InvalidSpec("the CWL process has no id; give it one (it becomes the process id)")
    version = str(
        overrides.get("version")
        or _metadata(document, entry, "softwareVersion", "version")
        or "1.0.0"
    )
    described_inputs = overrides.get("inputs") if isinstance(overrides.get("inputs"), dict) else {}
    inputs: list[InputSpec] = []
    ogc_inputs: dict[str, Any] = {}
    for input_name, item in _ordered(entry, normalised, "inputs"):
        description, optional, many = _describe_io(input_name, item)
        default = item.get("default")
        if isinstance(described_inputs.get(input_name), dict):
            for key in ("title", "description"):
                if described_inputs[input_name].get(key):
                    description[key] = described_inputs[input_name][key]
        if default is not None and not isinstance(default, dict):
            description["schema"]["default"] = default
        description["minOccurs"] = 0 if optional or default is not None else 1
        description["maxOccurs"] = "unbounded" if many else 1
        ogc_inputs[input_name] = description
        base = _base_type(item.get("type"))
        inputs.append(
            InputSpec(
                name=input_name,
                kind="file" if base == "File" else "config",
                description=description["description"],
                default=_default_value(default),
                required=False if optional or default is not None else None,
                data_type=None if many else DATA_TYPES.get(base or ""),
            )
        )
    ogc_outputs = {
        n: _describe_io(n, item)[0] for n, item in _ordered(entry, normalised, "outputs")
    }
    keywords = _metadata(document, entry, "keywords") or []
    if isinstance(keywords, str):
        keywords = [k.strip() for k in keywords.split(",") if k.strip()]
    description = overrides.get("description") or entry.get("doc") or entry.get("label") or ""
    ogc: dict[str, Any] = {
        "title": overrides.get("title") or entry.get("label") or name,
        "keywords": [str(k) for k in keywords],
        "inputs": ogc_inputs,
        "outputs": ogc_outputs,
    }
    for key in ("jobControlOptions", "outputTransmission"):
        if isinstance(overrides.get(key), list):
            ogc[key] = overrides[key]
    try:
        return AlgorithmSpec(
            name=name,
            version=version,
            description=str(description),
            docker_container_url=_docker_image(document),
            inputs=inputs,
            source_format="cwl",
            cwl={
                "document": document,
                "entry": _bare(entry.get("id")) or None,
                "class": entry.get("class"),
            },
            ogc=ogc,
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise InvalidSpec(f"the CWL process id or version is not usable: {problems}") from exc

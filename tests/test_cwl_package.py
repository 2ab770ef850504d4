"""CWL packages without a server: parsing and validation into an AlgorithmSpec, the CWL ->
OGC mapping, choosing the entry point, OGC Application Packages, and what the runner
writes for cwltool (DockerRequirement moved to hints, the job order, the results)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from opendps.errors import InvalidSpec
from opendps.registry.cwl import (
    WorkflowNotFound,
    select_entry,
    spec_from_cwl,
    type_schema,
    unwrap_app_package,
)
from opendps.runner.cwl_exec import job_order, move_docker_to_hints, results_document
from opendps.runner.workdir import WorkDir
from opendps.service.packages import href_fetcher, parse_package
from tests.support.http_server import HttpFiles
from tests.test_cwl import APP_PACKAGE, TOOL


@pytest.mark.parametrize(
    ("cwl_type", "schema", "optional", "many"),
    [
        ("boolean", {"type": "boolean"}, False, False),
        ("long", {"type": "integer", "format": "int64"}, False, False),
        ("double", {"type": "number", "format": "double"}, False, False),
        (["null", "string"], {"type": "string"}, True, False),
        ({"type": "array", "items": "File"}, {"type": "string", "format": "uri"}, False, True),
        (
            ["null", {"type": "array", "items": "int"}],
            {"type": "integer", "format": "int32"},
            True,
            True,
        ),
        (
            {"type": "array", "items": {"type": "array", "items": "float"}},
            {"type": "array", "items": {"type": "number", "format": "float"}},
            False,
            True,
        ),
        (
            {
                "type": "enum",
                "symbols": ["file:///p.cwl#main/mode/fast", "file:///p.cwl#main/mode/slow"],
            },
            {"type": "string", "enum": ["fast", "slow"]},
            False,
            False,
        ),
        (
            {"type": "record", "fields": [{"name": "#main/r/x", "type": "int"}]},
            {"type": "object", "properties": {"x": {"type": "integer", "format": "int32"}}},
            False,
            False,
        ),
        (
            ["int", "string"],
            {"oneOf": [{"type": "integer", "format": "int32"}, {"type": "string"}]},
            False,
            False,
        ),
        ("Any", {}, False, False),
    ],
)
def test_cwl_types_map_to_ogc_schemas(
    cwl_type: object, schema: dict, optional: bool, many: bool
) -> None:
    assert type_schema(cwl_type) == (schema, optional, many)


def test_commandlinetool_spec() -> None:
    spec = spec_from_cwl(TOOL, "application/cwl+yaml")
    assert (spec.name, spec.version, spec.source_format) == ("prefix-lines", "0.1.0", "cwl")
    assert spec.docker_container_url == "python:3.12-slim"
    kinds = {i.name: (i.kind, i.data_type, i.mandatory) for i in spec.inputs}
    assert kinds == {
        "infile": ("file", None, True),
        "message": ("config", "string", True),
        "lines": ("config", "integer", False),
    }
    assert spec.cwl["entry"] == "prefix-lines"
    assert spec.ogc["keywords"] == ["text", "demo"]
    assert "jobControlOptions" not in spec.ogc  # registered processes' default applies


def test_app_package_spec_picks_the_workflow() -> None:
    spec = spec_from_cwl(APP_PACKAGE, "application/cwl+yaml")
    assert (spec.name, spec.version) == ("water-bodies", "1.4.0")
    assert spec.cwl["class"] == "Workflow"
    assert [i.name for i in spec.inputs] == ["scene", "threshold", "bands"]
    assert spec.ogc["inputs"]["bands"]["maxOccurs"] == "unbounded"
    assert spec.ogc["outputs"]["stac_catalog"]["schema"] == {"type": "string", "format": "uri"}
    tool = spec_from_cwl(APP_PACKAGE, "application/cwl+yaml", workflow="detect")
    assert tool.name == "detect" and tool.version == "1.4.0"


def test_entry_point_choice() -> None:
    graph = {
        "$graph": [
            {"class": "Workflow", "id": "a"},
            {"class": "Workflow", "id": "b"},
            {"class": "CommandLineTool", "id": "t"},
        ]
    }
    with pytest.raises(WorkflowNotFound, match=r"\?w="):
        select_entry(graph, None)
    assert select_entry(graph, "#b")["id"] == "b"
    with pytest.raises(WorkflowNotFound, match="a, b, t"):
        select_entry(graph, "c")
    graph["$graph"].append({"class": "Workflow", "id": "main"})
    assert select_entry(graph, None)["id"] == "main"
    with pytest.raises(InvalidSpec, match="class"):
        select_entry({"class": "Operation"}, None)


def test_errors_name_the_problem() -> None:
    with pytest.raises(InvalidSpec, match="not valid YAML"):
        spec_from_cwl("a: [", "application/cwl+yaml")
    with pytest.raises(InvalidSpec, match="no id"):
        spec_from_cwl(TOOL.replace("id: prefix-lines\n", ""), "application/cwl+yaml")
    with pytest.raises(InvalidSpec, match=r"(?s)the CWL document is invalid: package.cwl:.*inputz"):
        spec_from_cwl(TOOL.replace("inputs:\n", "inputz:\n"), "application/cwl+yaml")


def test_ogc_application_packages(tmp_path: Path, http_files: HttpFiles) -> None:
    path = tmp_path / "tool.cwl"
    path.write_text(TOOL)
    http_files.add("tool.cwl", TOOL.encode())
    fetch = href_fetcher(None)
    document, overrides = unwrap_app_package(
        {"executionUnit": {"href": http_files.url("tool.cwl")}}, fetch
    )
    assert document["id"] == "prefix-lines" and overrides == {}
    for local in (path.as_uri(), str(path)):  # never a local path, whatever the settings
        with pytest.raises(InvalidSpec, match="not an http"):
            unwrap_app_package({"executionUnit": {"href": local}}, fetch)
    document, overrides = unwrap_app_package(
        {
            "executionUnit": [{"unit": yaml.safe_load(TOOL)}],
            "processDescription": {"id": "renamed", "version": "9.0.0"},
        }
    )
    assert overrides["id"] == "renamed"
    spec = spec_from_cwl(
        json.dumps(
            {"executionUnit": {"value": TOOL}, "processDescription": {"process": {"id": "renamed"}}}
        ),
        "application/ogcapppkg+json",
    )
    assert spec.process_id == "renamed:0.1.0"
    with pytest.raises(InvalidSpec, match="Docker"):
        unwrap_app_package({"executionUnit": {"type": "docker", "image": "x"}})


def test_yaml_and_json_registrations_holding_cwl_are_recognised() -> None:
    assert parse_package(TOOL, "application/yaml").spec.source_format == "cwl"
    assert (
        parse_package(json.dumps(yaml.safe_load(TOOL)), "application/json").media_type
        == "application/json"
    )


def test_docker_requirements_move_to_hints() -> None:
    document = yaml.safe_load(APP_PACKAGE)
    moved = move_docker_to_hints(document)
    assert moved == ["ghcr.io/example/detect:1.0", "ghcr.io/example/stac:1.0"]
    detect, stac = document["$graph"][1], document["$graph"][2]
    assert "DockerRequirement" not in detect["requirements"]
    assert detect["hints"] == [
        {"class": "DockerRequirement", "dockerPull": "ghcr.io/example/detect:1.0"}
    ]
    assert [r["class"] for r in stac["requirements"]] == ["InitialWorkDirRequirement"]
    as_map = {
        "class": "CommandLineTool",
        "requirements": {"DockerRequirement": {"dockerPull": "x"}},
        "hints": {"ResourceRequirement": {}},
    }
    assert move_docker_to_hints(as_map) == ["x"]
    assert as_map["hints"] == {"ResourceRequirement": {}, "DockerRequirement": {"dockerPull": "x"}}
    assert move_docker_to_hints(as_map) == []


def test_job_order_points_at_localized_files(tmp_path: Path) -> None:
    spec = spec_from_cwl(APP_PACKAGE, "application/cwl+yaml")
    work = WorkDir(tmp_path)
    order = job_order(
        spec, {"scene": "https://host/data/scene.tif", "threshold": 0.2, "bands": ["a"]}, work
    )
    assert order == {
        "scene": {"class": "File", "path": str(tmp_path / "input" / "scene.tif")},
        "threshold": 0.2,
        "bands": ["a"],
    }


def test_results_document_links_staged_files(tmp_path: Path) -> None:
    output = tmp_path / "output"
    (output / "cat").mkdir(parents=True)
    (output / "cat" / "catalog.json").write_text("{}")
    (output / "a b.txt").write_text("x")
    (output / "loose").mkdir()
    (output / "loose" / "1.tif").write_text("x")
    outputs = {
        "file": {"class": "File", "location": (output / "a b.txt").as_uri(), "basename": "a b.txt"},
        "catalog": {"class": "Directory", "location": (output / "cat").as_uri()},
        "folder": {"class": "Directory", "path": str(output / "loose")},
        "count": 3,
        "record": {"k": "v"},
        "nothing": None,
    }
    assert results_document(outputs, output) == {
        "file": {"href": "a%20b.txt", "type": "text/plain", "title": "a b.txt"},
        "catalog": {
            "href": "cat/catalog.json",
            "type": "application/json",
            "title": "catalog.json",
        },
        "folder": [{"href": "loose/1.tif", "type": "image/tiff", "title": "1.tif"}],
        "count": 3,
        "record": {"value": {"k": "v"}, "mediaType": "application/json"},
    }

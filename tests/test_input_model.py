"""The one input model (issue #8 item 4): one JSON Schema per algorithm, checked with the
``jsonschema`` library; the OGC layer only decodes value encodings; one URL parser."""

from __future__ import annotations

import base64
from typing import Any

import jsonschema
import pytest

from opendps.api.ogc.inputs import decode_inputs
from opendps.builtins import ECHO, ECHO_INPUTS
from opendps.errors import InvalidInput
from opendps.net.safety import UrlPolicy
from opendps.net.urls import parse_urls
from opendps.registry.spec import AlgorithmSpec, parse_registration
from opendps.runner.localize import plan_downloads
from opendps.service.inputs import (
    inputs_schema,
    normalise_inputs,
    normalise_schema,
    parse_priority,
    validation_error,
)

DESCRIBED: dict[str, Any] = {
    "text": {"schema": {"type": "string", "contentMediaType": "text/plain"}},
    "count": {"schema": {"type": "integer"}, "minOccurs": 0},
    "files": {
        "schema": {"type": "string", "format": "uri"},
        "maxOccurs": "unbounded",
        "minOccurs": 0,
    },
    "box": {"schema": ECHO_INPUTS["bboxInput"]["schema"], "minOccurs": 0},
    "blob": {"schema": ECHO_INPUTS["binaryInput"]["schema"], "minOccurs": 0},
}


def ogc_spec(described: dict[str, Any]) -> AlgorithmSpec:
    """A process whose inputs are OGC descriptions (as a CWL package or a built-in has)."""
    return AlgorithmSpec(name="p", version="1", source_format="cwl", ogc={"inputs": described})


def execute(described: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """What the OGC execution route does: decode the encodings, then the service checks."""
    plain, _ = decode_inputs(described, given)
    return normalise_inputs(ogc_spec(described), plain)


MAAP = parse_registration(
    """
algorithm_name: maap
algorithm_version: main
repository_url: https://example.org/r.git
run_command: r/run.sh
inputs:
  file:
    - {name: granule}
  positional:
    - {name: count, data_type: int}
    - {name: scale, data_type: float, default: 1.5}
    - {name: label, required: false}
  config:
    - {name: settings, default: {}}
"""
)


def test_the_inputs_are_one_json_schema_that_jsonschema_accepts() -> None:
    for spec in (MAAP, ECHO, ogc_spec(DESCRIBED)):
        schema = inputs_schema(spec)
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["type"] == "object" and schema["additionalProperties"] is False
    maap = inputs_schema(MAAP)
    assert maap["required"] == ["granule", "count"]
    assert maap["properties"]["count"] == {"type": "integer"}
    assert jsonschema.Draft202012Validator(maap).is_valid({"granule": "https://x/a", "count": 3})
    assert not jsonschema.Draft202012Validator(maap).is_valid({"granule": "x", "count": "three"})


def test_ogc_encodings_are_decoded_then_checked() -> None:
    blob = {
        "value": base64.b64encode(b"\x00tiff").decode(),
        "format": {"mediaType": "image/tiff", "encoding": "base64"},
    }
    given = {
        "text": {"value": "hello", "mediaType": "text/plain; charset=utf-8"},
        "count": "7",  # an integer as text: coerced
        "files": [{"href": "https://x/a.tif"}, "https://x/b.tif"],
        "box": {"bbox": [1, 2, 3, 4], "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"},
        "blob": blob,
    }
    assert execute(DESCRIBED, given) == {
        "text": "hello",
        "count": 7,
        "files": ["https://x/a.tif", "https://x/b.tif"],
        "box": given["box"],
        "blob": blob["value"],
    }
    _, as_sent = decode_inputs(DESCRIBED, given)
    assert as_sent["text"] == given["text"] and as_sent["blob"] == blob
    single = execute(DESCRIBED, {"text": "x", "files": "https://x/c.tif"})
    assert single["files"] == "https://x/c.tif"  # one value where many are allowed


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({}, "missing required input 'text'"),
        ({"text": "x", "other": 1}, "unknown input(s) 'other'"),
        ({"text": {"value": "x", "mediaType": "image/png"}}, "media type 'image/png'"),
        ({"text": {"href": "https://x", "type": "application/pdf"}}, "media type"),
        ({"text": {"type": "wrong/type"}}, "input 'text': {'type': 'wrong/type'} is not of type"),
        ({"text": "x", "count": "seven"}, "input 'count': 'seven' is not of type 'integer'"),
        ({"text": "x", "count": {"href": "https://x"}}, "by reference"),
        ({"text": ["a", "b"]}, "input 'text': ['a', 'b'] is not of type 'string'"),
        ({"text": "x", "box": {"bbox": [1, 2, 3]}}, "input 'box'"),
        ({"text": "x", "blob": {"value": "not base64!", "encoding": "base64"}}, "base64"),
        ({"text": "x", "count": 1e400}, "input 'count': inf is not a finite number"),
    ],
)
def test_invalid_inputs_are_refused_naming_the_input(given: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        execute(DESCRIBED, given)
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"count": 1}, "missing required input 'granule'"),
        ({"granule": "https://x/a", "count": "three"}, "input 'count': 'three' is not of type"),
        ({"granule": "https://x/a", "count": 2.5}, "input 'count': 2.5 is not of type"),
        ({"granule": "https://x/a", "count": True}, "input 'count': True is not of type"),
        ({"granule": "https://x/a", "count": 1, "label": [1]}, "positional"),
        ({"granule": "relative/path", "count": 1}, "input 'granule' is a file input"),
        ({"granule": "https://x/a", "count": 1, "nope": 1}, "unknown input(s) 'nope'"),
    ],
)
def test_maap_inputs_go_through_the_same_model(given: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        normalise_inputs(MAAP, given)
    assert message in caught.value.message


def test_maap_values_are_coerced_and_defaults_filled() -> None:
    values = normalise_inputs(MAAP, {"granule": "https://x/a", "count": "3"})
    assert values == {
        "granule": "https://x/a",
        "count": 3,
        "scale": 1.5,
        "label": "",  # an omitted optional positional input keeps its place
        "settings": {},
    }


def test_openapi_30_schemas_are_read_as_json_schema() -> None:
    assert validation_error(normalise_schema({"type": "integer"}), 3.0, "x") is None
    assert validation_error(normalise_schema({"type": "integer"}), 3.5, "x")
    bounded = {"type": "number", "maximum": 1, "exclusiveMaximum": True}
    assert validation_error(normalise_schema(bounded), 1, "x")
    assert validation_error(normalise_schema(bounded), 0.5, "x") is None
    assert (
        validation_error(normalise_schema({"type": "string", "nullable": True}), None, "x") is None
    )
    union = {"oneOf": [{"type": "integer"}, {"type": "number"}]}  # CWL int | float
    assert validation_error(normalise_schema(union), 2, "x") is None


@pytest.mark.parametrize("value", ["abc", None, 1e400, True, 5.7, -1, 10, [5], "5.0"])
def test_priorities_that_are_not_an_integer_0_to_9_are_refused(value: Any) -> None:
    with pytest.raises(InvalidInput, match="priority"):
        parse_priority(value)


def test_priorities_as_numbers_or_digit_strings() -> None:
    assert parse_priority(0) == 0 and parse_priority("9") == 9 and parse_priority(" 5 ") == 5


# -- one URL parser ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "urls"),
    [
        ("/a,/b", ["/a", "/b"]),
        ("http://host/ok.txt,/etc/passwd", ["http://host/ok.txt", "/etc/passwd"]),
        ("https://h/x?bbox=1,2,3,4", ["https://h/x?bbox=1,2,3,4"]),
        ('["https://h/a", "s3://b/k"]', ["https://h/a", "s3://b/k"]),
        (
            [{"href": "https://h/a"}, "https://h/b,https://h/c"],
            ["https://h/a", "https://h/b", "https://h/c"],
        ),
    ],
)
def test_submit_and_localize_split_values_the_same_way(value: Any, urls: list[str]) -> None:
    assert parse_urls(value) == urls
    assert [url for _, url, _ in plan_downloads({"f": value})] == urls


AUTH = UrlPolicy(
    schemes=frozenset({"http", "https", "s3"}),
    local_files=False,
    s3_buckets=frozenset({"public-data"}),
    private_addresses=False,
)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("http://host/ok.txt,/etc/passwd", "local files ('/etc/passwd') are not allowed"),
        ("file:///etc/passwd", "local files"),
        ("gs://bucket/key", "gs:// URLs are not allowed"),
        ("s3://private-bucket/key", "the s3 bucket 'private-bucket'"),
        ("http://127.0.0.1:8000/x", "private address"),
        ("http://[::1]/x", "private address"),
        ("http://10.1.2.3/x", "private address"),
        ("http://169.254.169.254/latest/meta-data", "private address"),
        ("http://localhost:8000/x", "names this machine"),
    ],
)
def test_with_auth_on_only_public_http_and_listed_s3_inputs_are_accepted(
    value: str, message: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        normalise_inputs(MAAP, {"granule": value, "count": 1}, AUTH)
    assert message in caught.value.message and "'granule'" in caught.value.message


def test_with_auth_on_public_urls_and_listed_buckets_pass() -> None:
    for value in ("https://example.org/a.tif", "s3://public-data/a.tif", "http://8.8.8.8/x"):
        assert normalise_inputs(MAAP, {"granule": value, "count": 1}, AUTH)["granule"] == value


def test_urls_that_cwltool_fetches_itself_follow_the_same_rules() -> None:
    directory = ogc_spec({"folder": {"schema": {"type": "string", "format": "uri"}}})
    with pytest.raises(InvalidInput, match="'folder': local files"):
        normalise_inputs(directory, {"folder": "/etc"}, AUTH)
    assert normalise_inputs(directory, {"folder": "https://example.org/d/"}, AUTH) == {
        "folder": "https://example.org/d/"
    }

"""The OGC pieces without a server: execution-mode negotiation, input checking and
decoding, results rendering, the OpenAPI 3.0 rewrite."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from opendps.api.ogc.execute import negotiate
from opendps.api.ogc.inputs import (
    check_inputs,
    media_types_agree,
    requested_outputs,
    schema_error,
)
from opendps.api.ogc.openapi import schema_30
from opendps.api.ogc.results import link_header, media_type_of, raw_content
from opendps.builtins import ECHO_INPUTS
from opendps.errors import InvalidInput

BOTH = ["sync-execute", "async-execute", "dismiss"]


@pytest.mark.parametrize(
    ("control", "prefer", "synchronous", "applied", "applied_async"),
    [
        (["sync-execute"], {}, True, [], []),
        (["sync-execute"], {"respond-async": None}, True, [], []),
        (["async-execute"], {}, False, [], []),
        (["async-execute"], {"respond-async": None}, False, [], ["respond-async"]),
        (BOTH, {}, True, [], []),
        (BOTH, {"respond-sync": None}, True, [], []),  # OWSLib's token: ignored
        (BOTH, {"respond-async": None}, False, [], ["respond-async"]),
        (BOTH, {"respond-async": None, "wait": "5"}, True, ["wait=5"], ["respond-async", "wait=5"]),
        (BOTH, {"wait": "5"}, True, ["wait=5"], ["wait=5"]),
        ([], {}, False, [], []),  # no options: asynchronous
    ],
)
def test_negotiation_follows_the_ogc_table(
    control: list[str],
    prefer: dict[str, Any],
    synchronous: bool,
    applied: list[str],
    applied_async: list[str],
) -> None:
    negotiated = negotiate(control, prefer, max_wait=300)
    assert negotiated.synchronous is synchronous
    assert negotiated.applied == applied and negotiated.applied_async == applied_async
    if "wait" in prefer and synchronous:
        assert negotiated.wait == 5


def test_wait_is_capped_by_the_server_limit() -> None:
    assert negotiate(BOTH, {"wait": "9999"}, max_wait=60).wait == 60
    assert negotiate(BOTH, {"wait": "soon"}, max_wait=60).wait == 60  # not a number: ignored


def test_schema_checker() -> None:
    assert schema_error({"type": "integer"}, 3, "x") is None
    assert schema_error({"type": "integer"}, 3.0, "x") is None
    assert "expected integer" in schema_error({"type": "integer"}, 3.5, "x")
    assert "expected integer" in schema_error({"type": "integer"}, True, "x")
    assert schema_error({"type": "number", "minimum": 0, "exclusiveMaximum": 1}, 1, "x")
    assert schema_error({"type": "number", "maximum": 1, "exclusiveMaximum": True}, 1, "x")
    assert schema_error({"enum": ["a", "b"]}, "c", "x")
    assert schema_error({"type": "string", "pattern": "^a+$"}, "ab", "x")
    assert schema_error({"oneOf": [{"type": "integer"}, {"type": "number"}]}, 2, "x") is None
    assert schema_error({"type": "object", "required": ["bbox"]}, {}, "x")
    assert schema_error({"type": "object", "additionalProperties": False}, {"a": 1}, "x")
    assert schema_error(
        {"type": "array", "items": {"type": "string"}, "maxItems": 1}, ["a", "b"], "x"
    )
    assert schema_error({"type": "string", "nullable": True}, None, "x") is None
    assert schema_error({"not": {"type": "string"}}, "a", "x")


def test_every_value_encoding_is_accepted_and_decoded() -> None:
    described = {
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
    plain = check_inputs(described, given, plain=True)
    assert plain == {
        "text": "hello",
        "count": 7,
        "files": ["https://x/a.tif", "https://x/b.tif"],
        "box": given["box"],
        "blob": blob["value"],
    }
    as_sent = check_inputs(described, given, plain=False)
    assert as_sent["text"] == given["text"] and as_sent["blob"] == blob
    assert as_sent["count"] == 7  # numbers are never left wrapped
    single = check_inputs(described, {"text": "x", "files": "https://x/c.tif"}, plain=True)
    assert single["files"] == "https://x/c.tif"  # one value where many are allowed


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({}, "missing required input 'text'"),
        ({"text": "x", "other": 1}, "unknown input(s) 'other'"),
        ({"text": {"value": "x", "mediaType": "image/png"}}, "media type 'image/png'"),
        ({"text": {"href": "https://x", "type": "application/pdf"}}, "media type"),
        ({"text": {"type": "wrong/type"}}, "expected string"),
        ({"text": "x", "count": "seven"}, "expected integer"),
        ({"text": "x", "count": {"href": "https://x"}}, "by reference"),
        ({"text": ["a", "b"]}, "expected string"),
    ],
)
def test_invalid_inputs_are_refused_naming_the_input(given: dict[str, Any], message: str) -> None:
    described = {
        "text": {"schema": {"type": "string", "contentMediaType": "text/plain"}},
        "count": {"schema": {"type": "integer"}, "minOccurs": 0},
    }
    with pytest.raises(InvalidInput, match=r".*" + message.replace("(", r"\(").replace(")", r"\)")):
        check_inputs(described, given, plain=True)


def test_media_types() -> None:
    assert media_types_agree("image/tiff; application=geotiff", "image/tiff")
    assert media_types_agree("image/png", "image/*")
    assert media_types_agree("anything/at-all", "*/*")
    assert not media_types_agree("image/png", "image/tiff")


def test_requested_outputs() -> None:
    described = {"a": {}, "b": {}}
    assert requested_outputs(described, {}) == {"a": "value", "b": "value"}
    assert requested_outputs(described, {"b": {"transmissionMode": "reference"}}) == {
        "b": "reference"
    }
    with pytest.raises(InvalidInput, match="unknown output 'c'"):
        requested_outputs(described, {"c": {}})
    with pytest.raises(InvalidInput, match="transmissionMode"):
        requested_outputs(described, {"a": {"transmissionMode": "ref"}})


def test_raw_content_of_each_kind() -> None:
    assert raw_content("text") == (b"text", "text/plain; charset=utf-8")
    assert raw_content({"value": {"a": 1}}) == (b'{"a": 1}', "application/json")
    encoded = base64.b64encode(b"\x89PNG").decode()
    assert raw_content({"value": encoded, "mediaType": "image/png", "encoding": "base64"}) == (
        b"\x89PNG",
        "image/png",
    )
    assert raw_content(
        "not base64!", {"contentEncoding": "binary", "contentMediaType": "image/tiff"}
    ) == (b"not base64!", "image/tiff")
    assert raw_content([1, 2]) == (b"[1, 2]", "application/json")
    assert media_type_of({"href": "x", "type": "text/csv"}) == "text/csv"
    assert link_header({"href": "http://h/x", "type": "text/plain"}, "r", "out") == (
        '<http://h/x>; rel="r"; type="text/plain"; title="out"'
    )


def test_openapi_31_schemas_become_30() -> None:
    assert schema_30({"anyOf": [{"type": "string"}, {"type": "null"}], "title": "T"}) == {
        "type": "string",
        "nullable": True,
        "title": "T",
    }
    assert schema_30({"anyOf": [{"$ref": "#/x"}, {"type": "null"}]}) == {
        "nullable": True,
        "allOf": [{"$ref": "#/x"}],
    }
    assert schema_30({"type": ["integer", "null"]}) == {"type": "integer", "nullable": True}
    assert schema_30({"const": "a"}) == {"enum": ["a"]}
    assert schema_30({"type": "number", "exclusiveMinimum": 0}) == {
        "type": "number",
        "minimum": 0,
        "exclusiveMinimum": True,
    }
    assert schema_30(
        {"type": "string", "contentEncoding": "base64", "contentMediaType": "image/png"}
    ) == {"type": "string", "format": "byte"}
    assert schema_30({"examples": [1, 2], "type": "integer"}) == {"type": "integer", "example": 1}
    nested = schema_30(
        {"type": "object", "properties": {"a": {"type": ["string", "null"]}}, "items": {"const": 1}}
    )
    assert nested["properties"]["a"] == {"type": "string", "nullable": True}
    assert nested["items"] == {"enum": [1]}

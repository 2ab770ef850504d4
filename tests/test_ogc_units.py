"""The OGC pieces without a server: execution-mode negotiation, media types, results
rendering, the OpenAPI 3.0 rewrite (input checking: tests/test_input_model.py)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from opendps.api.ogc.execute import negotiate
from opendps.api.ogc.inputs import media_types_agree, requested_outputs
from opendps.api.ogc.openapi import schema_30
from opendps.api.ogc.results import link_header, media_type_of, raw_content
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

"""Built-in processes: ``echo`` (shaped for the OGC CITE test suite) and ``hello-world``.

Each is a ``python -m`` module run by the real runner like any job: it reads its inputs
from ``_context.json`` in the work dir (its cwd) and writes its OGC results document to
``output/_results.json``. Their process descriptions live here as ``AlgorithmSpec``s, with
the OGC input and output descriptions in ``spec.ogc`` (api/builtins.py registers them).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from opendps.registry.spec import AlgorithmSpec, InputSpec

VERSION = "1.0.0"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
BBOX_SCHEMA: dict[str, Any] = {
    "type": "object",
    "format": "ogc-bbox",
    "required": ["bbox"],
    "properties": {
        "bbox": {
            "type": "array",
            "oneOf": [{"minItems": 4, "maxItems": 4}, {"minItems": 6, "maxItems": 6}],
            "items": {"type": "number"},
        },
        "crs": {"type": "string", "default": CRS84},
    },
}
GEOTIFF = "image/tiff; application=geotiff"

# The echo's inputs, in the order the CITE suite expects: its first input must be a plain
# string, and the output of the same name carries it back. Every other input is optional
# because the suite sends only the inputs it knows how to fill.
ECHO_INPUTS: dict[str, dict[str, Any]] = {
    "echoInput": {
        "title": "Echo value",
        "description": "A string, echoed back as the output of the same name.",
        "schema": {"type": "string"},
        "minOccurs": 1,
        "maxOccurs": 1,
    },
    "pause": {
        "title": "Pause",
        "description": "Seconds to wait before answering (0-300), so that a running job "
        "and a result-not-ready answer can be observed.",
        "schema": {"type": "number", "minimum": 0, "maximum": 300},
        "minOccurs": 0,
        "maxOccurs": 1,
    },
    "objectInput": {
        "title": "Object",
        "description": 'A JSON object given as a qualified value ({"value": {...}}). A string '
        "is accepted too: the CITE suite sends one to object inputs.",
        "schema": {"oneOf": [{"type": "object"}, {"type": "string"}]},
        "minOccurs": 0,
        "maxOccurs": 1,
    },
    "bboxInput": {
        "title": "Bounding box",
        "description": 'An OGC bounding box ({"bbox": [...], "crs": ...}).',
        "schema": BBOX_SCHEMA,
        "minOccurs": 0,
        "maxOccurs": 1,
    },
    "binaryInput": {
        "title": "Binary",
        "description": "Binary content, base64-encoded in a qualified value, or a link.",
        "schema": {"type": "string", "contentEncoding": "binary", "contentMediaType": GEOTIFF},
        "minOccurs": 0,
        "maxOccurs": 1,
    },
    "textInput": {
        "title": "Text",
        "description": "Plain text (contentMediaType text/plain), inline or as a link.",
        "schema": {"type": "string", "contentMediaType": "text/plain"},
        "minOccurs": 0,
        "maxOccurs": 1,
    },
    "arrayInput": {
        "title": "Array",
        "description": "An array of integers.",
        "schema": {"type": "array", "items": {"type": "integer"}},
        "minOccurs": 0,
        "maxOccurs": 1,
    },
}
ECHOED = [name for name in ECHO_INPUTS if name != "pause"]
ECHO_OUTPUTS: dict[str, dict[str, Any]] = {
    name: {
        "title": ECHO_INPUTS[name]["title"],
        "description": f"The value of {name}, as it was given.",
        "schema": ECHO_INPUTS[name]["schema"],
    }
    for name in ECHOED
}

ECHO = AlgorithmSpec(
    name="echo",
    version=VERSION,
    description="Answers its inputs as outputs of the same name (the OGC test process).",
    source_format="builtin",
    builtin_module="opendps.builtins.echo",
    inputs=[
        InputSpec(name="echoInput", kind="config", data_type="string"),
        InputSpec(name="pause", kind="config", data_type="number", required=False),
        *[
            InputSpec(name=name, kind="config", required=False)
            for name in ECHOED
            if name != "echoInput"
        ],
    ],
    ogc={
        "title": "Echo",
        "keywords": ["test", "echo", "builtin"],
        "inputs": ECHO_INPUTS,
        "outputs": ECHO_OUTPUTS,
        "jobControlOptions": ["sync-execute", "async-execute", "dismiss"],
    },
)

HELLO_WORLD = AlgorithmSpec(
    name="hello-world",
    version=VERSION,
    description='Greets whoever is named: name -> "Hello <name>!".',
    source_format="builtin",
    builtin_module="opendps.builtins.hello_world",
    inputs=[InputSpec(name="name", kind="config", data_type="string")],
    ogc={
        "title": "Hello World",
        "keywords": ["hello world", "builtin"],
        "inputs": {
            "name": {
                "title": "Name",
                "description": "Who to greet.",
                "schema": {"type": "string"},
                "minOccurs": 1,
                "maxOccurs": 1,
            }
        },
        "outputs": {
            "greeting": {
                "title": "Greeting",
                "description": '"Hello <name>!"',
                "schema": {"type": "string", "contentMediaType": "text/plain"},
            }
        },
        "jobControlOptions": ["sync-execute", "async-execute", "dismiss"],
    },
)

BUILTIN_SPECS = [ECHO, HELLO_WORLD]

# -- helpers for the process modules (they run in the job's work dir) ----------------------


def read_inputs() -> dict[str, Any]:
    """The job's input values (``_context.json`` in the work dir)."""
    return json.loads(Path("_context.json").read_text())


def write_results(results: dict[str, Any]) -> None:
    """The OGC results document, read back by the runner into the job's ``results``."""
    output = Path(os.environ.get("DPS_OUTPUT_DIR", "output"))
    output.mkdir(parents=True, exist_ok=True)
    (output / "_results.json").write_text(json.dumps(results, indent=2))

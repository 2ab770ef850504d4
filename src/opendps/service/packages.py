"""Registration bodies -> AlgorithmSpec, by media type (DESIGN §5).

MAAP algorithm YAML / JSON and the legacy ADE YAML are parsed here; CWL application
packages are handed to ``opendps.registry.cwl`` (cwltool is a dependency of opendps).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass

from opendps.errors import InvalidSpec, UnsupportedMediaType
from opendps.registry.spec import AlgorithmSpec, parse_registration

YAML_TYPES = {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"}
JSON_TYPES = {"application/json"}
CWL_TYPES = {
    "application/cwl",
    "application/cwl+yaml",
    "application/cwl+json",
    "application/ogcapppkg+json",
}


@dataclass(frozen=True)
class Package:
    spec: AlgorithmSpec
    body: str
    media_type: str


CWL_MISSING = (
    "this installation cannot deploy CWL: cwltool is not importable (it is a dependency of "
    "opendps; reinstall it with `pip install --force-reinstall opendps`)"
)


def cwl_available() -> bool:
    """Whether CWL packages can be deployed and run here: the one answer every dialect uses.

    cwltool is a main dependency, so this is False only in a broken installation (one made
    with ``--no-deps``, or whose cwltool failed to import)."""
    try:
        return importlib.util.find_spec("cwltool") is not None
    except (ImportError, ValueError):
        return False


def media_type_of(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def looks_like_cwl(data: object) -> bool:
    return isinstance(data, dict) and (
        "cwlVersion" in data or "$graph" in data or "executionUnit" in data
    )


def parse_package(
    body: bytes | str, content_type: str | None, *, workflow: str | None = None
) -> Package:
    """Parse a registration body of any supported media type."""
    text = body.decode() if isinstance(body, bytes) else body
    media = media_type_of(content_type) or "application/yaml"
    if media in CWL_TYPES:
        return _parse_cwl(text, media, workflow)
    if media in JSON_TYPES:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidSpec(f"the body is not valid JSON: {exc}") from exc
        if looks_like_cwl(data):
            return _parse_cwl(text, media, workflow)
        if not isinstance(data, dict):
            raise InvalidSpec("the registration must be a JSON object")
        # OGC Part 2 wraps the description: {"processDescription": ..., "executionUnit": ...}
        return Package(parse_registration(data), text, media)
    if media in YAML_TYPES or media.endswith("+yaml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InvalidSpec(f"the body is not valid YAML: {exc}") from exc
        if looks_like_cwl(data):
            return _parse_cwl(text, "application/cwl+yaml", workflow)
        return Package(parse_registration(data if isinstance(data, dict) else text), text, media)
    raise UnsupportedMediaType(
        f"cannot register from {media or 'an unknown media type'}; send application/yaml or "
        f"application/json (MAAP algorithm), or {', '.join(sorted(CWL_TYPES))} (CWL)"
    )


def _parse_cwl(text: str, media: str, workflow: str | None) -> Package:
    if not cwl_available():
        raise UnsupportedMediaType(CWL_MISSING)
    from opendps.registry import cwl

    spec = cwl.spec_from_cwl(text, media, workflow=workflow)
    return Package(spec, text, media)

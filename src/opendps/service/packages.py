"""Registration bodies -> AlgorithmSpec, by media type (DESIGN §5).

MAAP algorithm YAML / JSON and the legacy ADE YAML are parsed here; CWL application
packages are handed to ``opendps.registry.cwl`` (cwltool is a dependency of opendps).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opendps.errors import InvalidSpec, UnsupportedMediaType
from opendps.net.fetch import fetch_text
from opendps.net.safety import UrlPolicy
from opendps.registry.spec import AlgorithmSpec, parse_registration
from opendps.yamltext import load_yaml

if TYPE_CHECKING:
    from opendps.settings import Settings

DEFAULT_MAX_BYTES = 5 * 1024**2  # the max_registration_bytes default
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


def check_size(body: bytes | str, max_bytes: int) -> None:
    """Registrations over the cap are refused before they are parsed."""
    size = len(body.encode() if isinstance(body, str) else body)
    if size > max_bytes:
        raise InvalidSpec(f"the registration is {size} bytes; this server accepts {max_bytes}")


def decode_body(body: bytes | str) -> str:
    if isinstance(body, str):
        return body
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidSpec(
            f"the registration is not valid UTF-8 (byte {exc.start}); send UTF-8 text"
        ) from None


def href_fetcher(settings: Settings | None) -> Callable[[str], str]:
    """How registration hrefs are fetched: http(s) only, within the URL policy and cap."""
    policy = UrlPolicy.from_settings(settings) if settings is not None else UrlPolicy()
    limit = settings.max_registration_bytes if settings is not None else DEFAULT_MAX_BYTES

    def fetch(href: str) -> str:
        return fetch_text(href, policy=policy, max_bytes=limit, what="executionUnit.href")

    return fetch


def parse_package(
    body: bytes | str,
    content_type: str | None,
    *,
    workflow: str | None = None,
    settings: Settings | None = None,
) -> Package:
    """Parse a registration body of any supported media type (``settings``: the server's
    size cap and URL policy; defaults otherwise)."""
    check_size(body, settings.max_registration_bytes if settings else DEFAULT_MAX_BYTES)
    text = decode_body(body)
    media = media_type_of(content_type) or "application/yaml"
    fetch = href_fetcher(settings)
    if media in CWL_TYPES:
        return _parse_cwl(text, media, workflow, fetch)
    if media in JSON_TYPES:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidSpec(f"the body is not valid JSON: {exc}") from exc
        except RecursionError:
            raise InvalidSpec("the body is nested too deeply") from None
        if looks_like_cwl(data):
            return _parse_cwl(text, media, workflow, fetch)
        if not isinstance(data, dict):
            raise InvalidSpec("the registration must be a JSON object")
        # OGC Part 2 wraps the description: {"processDescription": ..., "executionUnit": ...}
        return Package(parse_registration(data), text, media)
    if media in YAML_TYPES or media.endswith("+yaml"):
        data = load_yaml(text, "registration")
        if looks_like_cwl(data):
            return _parse_cwl(text, "application/cwl+yaml", workflow, fetch)
        return Package(parse_registration(data if isinstance(data, dict) else text), text, media)
    raise UnsupportedMediaType(
        f"cannot register from {media or 'an unknown media type'}; send application/yaml or "
        f"application/json (MAAP algorithm), or {', '.join(sorted(CWL_TYPES))} (CWL)"
    )


def _parse_cwl(text: str, media: str, workflow: str | None, fetch: Callable[[str], str]) -> Package:
    if not cwl_available():
        raise UnsupportedMediaType(CWL_MISSING)
    from opendps.registry import cwl

    spec = cwl.spec_from_cwl(text, media, workflow=workflow, fetch=fetch)
    return Package(spec, text, media)

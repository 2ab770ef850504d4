"""Registration bodies of both MAAP dialects -> a parsed package.

maap-py 5.x deploys CWL (``{"executionUnit": {"href": …}}`` or ``{"cwlRawText": …}``);
maap-py 4.x posts the algorithm YAML as JSON. A CWL URL or text that turns out to be
a MAAP algorithm YAML is registered as one, so 5.x users can deploy their existing
``algorithm_config.yaml`` with ``deploy_algorithm`` / ``deploy_algorithm_from_cwl_file``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import yaml

from opendps.api.maap.common import MaapError
from opendps.errors import Forbidden
from opendps.models import Algorithm
from opendps.registry.spec import AlgorithmSpec, parse_registration
from opendps.service.context import Services
from opendps.service.packages import (
    CWL_TYPES,
    YAML_TYPES,
    Package,
    cwl_available,
    media_type_of,
    parse_package,
)

MAX_PACKAGE_BYTES = 5 * 1024 * 1024
CWL_UNAVAILABLE = (
    "CWL deploy is not available on this server yet. Register the algorithm with its MAAP "
    "algorithm YAML instead: POST it to /api/mas/algorithm (maap-py 4.x "
    "register_algorithm_from_yaml_file), or pass the YAML's URL or text to deploy_algorithm / "
    "deploy_algorithm_from_cwl_file"
)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


def _is_cwl(data: Any) -> bool:
    return isinstance(data, dict) and (
        "cwlVersion" in data
        or "$graph" in data
        or data.get("class") in ("CommandLineTool", "Workflow")
    )


def package_from_text(text: str) -> Package:
    """CWL (when this server has it) or a MAAP / legacy ADE algorithm YAML."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MaapError(400, f"the package is not valid YAML or JSON: {exc}") from None
    if _is_cwl(data):
        if not cwl_available():
            raise MaapError(400, CWL_UNAVAILABLE)
        return parse_package(text, "application/cwl+yaml")
    if not isinstance(data, dict):
        raise MaapError(400, "the package must be a CWL document or a MAAP algorithm YAML mapping")
    return Package(parse_registration(data), text, "application/yaml")


def fetch_package(href: str) -> str:
    if not isinstance(href, str) or not href.startswith(("http://", "https://")):
        raise MaapError(400, f"executionUnit.href must be an http(s) URL; got {href!r}")
    try:
        with httpx.stream("GET", href, timeout=30.0, follow_redirects=True) as response:
            if response.status_code >= 400:
                raise MaapError(
                    400, f"could not fetch the package from {href}: HTTP {response.status_code}"
                )
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_PACKAGE_BYTES:
                    raise MaapError(400, f"the package at {href} is larger than 5 MB")
    except httpx.HTTPError as exc:
        raise MaapError(400, f"could not fetch the package from {href}: {exc}") from None
    return body.decode(errors="replace")


def package_from_ogc_body(raw: bytes, content_type: str | None) -> Package:
    """``POST/PUT /api/ogc/processes[/{id}]`` bodies."""
    media = media_type_of(content_type)
    if media in CWL_TYPES or media in YAML_TYPES or media.endswith("+yaml"):
        return package_from_text(raw.decode(errors="replace"))
    if not raw.strip():
        raise MaapError(
            400,
            'the request body is empty; send {"executionUnit": {"href": …}} or {"cwlRawText": …}',
        )
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return package_from_text(raw.decode(errors="replace"))  # YAML sent without its type
    if not isinstance(body, dict):
        raise MaapError(400, "the body must be a JSON object")
    unit, raw_text = body.get("executionUnit"), body.get("cwlRawText")
    if unit is not None and raw_text is not None:
        raise MaapError(400, "send either executionUnit or cwlRawText, not both")
    if isinstance(raw_text, str):
        return package_from_text(raw_text)
    if raw_text is not None:
        raise MaapError(400, "cwlRawText must be a string (the text of the CWL file)")
    if isinstance(unit, dict) and unit.get("href"):
        return package_from_text(fetch_package(unit["href"]))
    if isinstance(unit, dict) and isinstance(unit.get("value"), str | dict):
        value = unit["value"]
        return package_from_text(value if isinstance(value, str) else json.dumps(value))
    if unit is not None:
        raise MaapError(400, 'executionUnit must be {"href": "<URL of the CWL file>"}')
    if _is_cwl(body):
        return package_from_text(raw.decode())
    if "algorithm_name" in body or "algo_name" in body:
        return Package(parse_registration(body), raw.decode(errors="replace"), "application/json")
    raise MaapError(
        400,
        'send {"executionUnit": {"href": …}} or {"cwlRawText": …} (CWL), or '
        "a MAAP algorithm YAML as JSON",
    )


def legacy_mapping(raw: bytes, form: dict[str, Any] | None) -> dict[str, Any]:
    """``POST /api/mas/algorithm``: the YAML as JSON (trailing commas tolerated, as
    maap-api-nasa does), or form fields; the even older 4.x "backwards compatible"
    schema (``algorithm_params: [{field, download}]``) is mapped to inputs."""
    if form:
        data: Any = dict(form)
        if isinstance(data.get("inputs"), str):
            try:
                data["inputs"] = json.loads(data["inputs"])
            except json.JSONDecodeError:
                pass
    else:
        text = raw.decode(errors="replace")
        if not text.strip():
            raise MaapError(400, "the request body is empty; send the algorithm YAML as JSON")
        try:
            data = json.loads(_TRAILING_COMMA.sub(r"\1", text))
        except json.JSONDecodeError:
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise MaapError(400, f"the registration is not valid JSON or YAML: {exc}") from None
    if isinstance(data, str):  # registerAlgorithm(json_string) posted twice-encoded
        try:
            data = json.loads(data)
        except json.JSONDecodeError:
            pass
    if not isinstance(data, dict):
        raise MaapError(400, "the registration must be a JSON object of algorithm fields")
    if "algorithm_params" in data and "inputs" not in data:
        params = data.pop("algorithm_params") or []
        data["inputs"] = [
            {"name": p.get("field") or p.get("name"), "download": p.get("download")}
            for p in params
            if isinstance(p, dict)
        ]
    return data


def check_owner(services: Services, algorithm: Algorithm, user: str) -> None:
    if services.settings.auth and algorithm.owner != user and not services.identity.is_admin(user):
        raise Forbidden(f"process {algorithm.process_id} belongs to {algorithm.owner}")


def check_registration_queue(services: Services, spec: AlgorithmSpec, user: str) -> None:
    """A queue named in the YAML that the user may not use is a 400 (maap-api-nasa)."""
    queue = services.settings.queue(spec.queue) if spec.queue else None
    if queue is None and spec.queue and spec.queue.startswith("maap-"):
        queue = services.settings.queue(spec.queue.removeprefix("maap-"))
    if (
        queue is not None
        and services.settings.auth
        and not queue.guest
        and services.identity.is_guest(user)
    ):
        raise MaapError(400, f"User {user} does not have access to queue {queue.name}")

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

from opendps.api.bodies import parse_json
from opendps.api.maap.common import MaapError
from opendps.errors import InvalidInput
from opendps.registry.spec import AlgorithmSpec, parse_registration
from opendps.service.context import Services
from opendps.service.packages import (
    CWL_TYPES,
    DEFAULT_MAX_BYTES,
    YAML_TYPES,
    Package,
    check_size,
    cwl_available,
    decode_body,
    href_fetcher,
    media_type_of,
    parse_package,
)
from opendps.settings import Settings
from opendps.yamltext import load_yaml

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


def package_from_text(text: str, settings: Settings | None = None) -> Package:
    """CWL (when this server has it) or a MAAP / legacy ADE algorithm YAML."""
    check_size(text, settings.max_registration_bytes if settings else DEFAULT_MAX_BYTES)
    data = load_yaml(text, "package")
    if _is_cwl(data):
        if not cwl_available():
            raise MaapError(400, CWL_UNAVAILABLE)
        return parse_package(text, "application/cwl+yaml", settings=settings)
    if not isinstance(data, dict):
        raise MaapError(400, "the package must be a CWL document or a MAAP algorithm YAML mapping")
    return Package(parse_registration(data), text, "application/yaml")


def package_from_ogc_body(
    raw: bytes, content_type: str | None, settings: Settings | None = None
) -> Package:
    """``POST/PUT /api/ogc/processes[/{id}]`` bodies."""
    check_size(raw, settings.max_registration_bytes if settings else DEFAULT_MAX_BYTES)
    text = decode_body(raw)
    media = media_type_of(content_type)
    if media in CWL_TYPES or media in YAML_TYPES or media.endswith("+yaml"):
        return package_from_text(text, settings)
    if not raw.strip():
        raise MaapError(
            400,
            'the request body is empty; send {"executionUnit": {"href": …}} or {"cwlRawText": …}',
        )
    try:
        body = parse_json(text, "registration")
    except InvalidInput:
        return package_from_text(text, settings)  # YAML sent without its type
    if not isinstance(body, dict):
        raise MaapError(400, "the body must be a JSON object")
    unit, raw_text = body.get("executionUnit"), body.get("cwlRawText")
    if unit is not None and raw_text is not None:
        raise MaapError(400, "send either executionUnit or cwlRawText, not both")
    if isinstance(raw_text, str):
        return package_from_text(raw_text, settings)
    if raw_text is not None:
        raise MaapError(400, "cwlRawText must be a string (the text of the CWL file)")
    if isinstance(unit, dict) and unit.get("href"):
        return package_from_text(href_fetcher(settings)(unit["href"]), settings)
    if isinstance(unit, dict) and isinstance(unit.get("value"), str | dict):
        value = unit["value"]
        return package_from_text(value if isinstance(value, str) else json.dumps(value), settings)
    if unit is not None:
        raise MaapError(400, 'executionUnit must be {"href": "<URL of the CWL file>"}')
    if _is_cwl(body):
        return package_from_text(text, settings)
    if "algorithm_name" in body or "algo_name" in body:
        return Package(parse_registration(body), text, "application/json")
    raise MaapError(
        400,
        'send {"executionUnit": {"href": …}} or {"cwlRawText": …} (CWL), or '
        "a MAAP algorithm YAML as JSON",
    )


def legacy_mapping(
    raw: bytes, form: dict[str, Any] | None, settings: Settings | None = None
) -> dict[str, Any]:
    """``POST /api/mas/algorithm``: the YAML as JSON (trailing commas tolerated, as
    maap-api-nasa does), or form fields; the even older 4.x "backwards compatible"
    schema (``algorithm_params: [{field, download}]``) is mapped to inputs."""
    if form:
        data: Any = dict(form)
        if isinstance(data.get("inputs"), str):
            try:
                data["inputs"] = parse_json(data["inputs"], "inputs field")
            except InvalidInput:
                pass
    else:
        check_size(raw, settings.max_registration_bytes if settings else DEFAULT_MAX_BYTES)
        text = decode_body(raw)
        if not text.strip():
            raise MaapError(400, "the request body is empty; send the algorithm YAML as JSON")
        try:
            data = parse_json(_TRAILING_COMMA.sub(r"\1", text), "registration")
        except InvalidInput:
            data = load_yaml(text, "registration")
    if isinstance(data, str):  # registerAlgorithm(json_string) posted twice-encoded
        try:
            data = parse_json(data, "registration")
        except InvalidInput:
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


def check_registration_queue(services: Services, spec: AlgorithmSpec, user: str) -> None:
    """A queue named in the YAML that the user may not use is a 400 (maap-api-nasa)."""
    queue = services.settings.queue(spec.queue) if spec.queue else None
    if queue is None and spec.queue and spec.queue.startswith("maap-"):
        queue = services.settings.queue(spec.queue.removeprefix("maap-"))
    if queue is not None and not services.policy.may_use_queue(user, queue):
        raise MaapError(400, f"User {user} does not have access to queue {queue.name}")

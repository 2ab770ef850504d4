"""WPS 2.0 XML as maap-py 4.x writes and parses it (reference §6.2, §6.3).

The 4.x client reads these documents positionally: the job id is the text of the
root's *first child*, a status is the child whose tag ends in ``Status``, results
are the ``Data`` grandchildren of children ending in ``Output``, metrics are the
root's children by plain tag name. The builders here keep exactly that order.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from opendps.api.maap.common import MaapError

WPS = "http://www.opengis.net/wps/2.0"
OWS = "http://www.opengis.net/ows/2.0"
XLINK = "http://www.w3.org/1999/xlink"
XSI = "http://www.w3.org/2001/XMLSchema-instance"

ET.register_namespace("wps", WPS)
ET.register_namespace("ows", OWS)
ET.register_namespace("xlink", XLINK)
ET.register_namespace("xsi", XSI)


def _w(tag: str) -> str:
    return f"{{{WPS}}}{tag}"


def _o(tag: str) -> str:
    return f"{{{OWS}}}{tag}"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _serialise(root: ET.Element) -> str:
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


def _child(parent: ET.Element, tag: str, text: Any = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = _text(text)
    return element


# -- documents the server answers ---------------------------------------------------------


def status_info(job_id: str, status: str, message: str | None = None) -> str:
    """``wps:StatusInfo``: JobID first (the 4.x submit reads ``root[0].text``)."""
    root = ET.Element(_w("StatusInfo"))
    _child(root, _w("JobID"), job_id)
    _child(root, _w("Status"), status)
    if message:
        _child(root, _w("Message"), message)
    return _serialise(root)


def result(job_id: str, outputs: Iterable[tuple[str, list[str]]]) -> str:
    """``wps:Result``: one ``wps:Output`` per product, one ``wps:Data`` per URL."""
    root = ET.Element(_w("Result"))
    _child(root, _w("JobID"), job_id)
    for output_id, urls in outputs:
        output = _child(root, _w("Output"), id=output_id)
        for url in urls:
            _child(output, _w("Data"), url)
    return _serialise(root)


def metrics(values: Mapping[str, Any]) -> str:
    """``<metrics>`` with one plain child per metric, text values."""
    root = ET.Element("metrics")
    for name, value in values.items():
        _child(root, name, value)
    return _serialise(root)


def exception_report(code: str, locator: str, text: str) -> str:
    root = ET.Element(_o("ExceptionReport"), {"version": "2.0.0"})
    exception = _child(root, _o("Exception"), exceptionCode=code, locator=locator)
    _child(exception, _o("ExceptionText"), text)
    return _serialise(root)


@dataclass(frozen=True)
class ProcessInfo:
    identifier: str
    title: str
    description: str
    inputs: list[tuple[str, str, Any]]  # name, data type, default


def process_offerings(processes: Iterable[ProcessInfo]) -> str:
    root = ET.Element(_w("ProcessOfferings"))
    for info in processes:
        offering = _child(
            root,
            _w("ProcessOffering"),
            jobControlOptions="async-execute dismiss",
            outputTransmission="value reference",
        )
        process = _child(offering, _w("Process"))
        _child(process, _o("Title"), info.title)
        _child(process, _o("Abstract"), info.description)
        _child(process, _o("Identifier"), info.identifier)
        for name, data_type, default in info.inputs:
            item = _child(process, _w("Input"))
            _child(item, _o("Title"), name)
            _child(item, _o("Identifier"), name)
            literal = _child(item, _w("LiteralData"))
            domain = _child(literal, "LiteralDataDomain")
            _child(domain, _o("DataType"), data_type)
            if default is not None:
                _child(domain, _o("DefaultValue"), default)
        output = _child(process, _w("Output"))
        _child(output, _o("Title"), "output")
        _child(output, _o("Identifier"), "output")
    return _serialise(root)


def capabilities(processes: Iterable[ProcessInfo]) -> str:
    root = ET.Element(_w("Capabilities"), {"service": "WPS", "version": "2.0.0"})
    service = _child(root, _o("ServiceIdentification"))
    _child(service, _o("Title"), "opendps")
    _child(service, _o("ServiceType"), "WPS")
    _child(service, _o("ServiceTypeVersion"), "2.0.0")
    contents = _child(root, _w("Contents"))
    for info in processes:
        summary = _child(contents, _w("ProcessSummary"), jobControlOptions="async-execute dismiss")
        _child(summary, _o("Title"), info.title)
        _child(summary, _o("Identifier"), info.identifier)
    return _serialise(root)


# -- the Execute request ---------------------------------------------------------------------


@dataclass(frozen=True)
class ExecuteRequest:
    identifier: str  # as sent: job-<algorithm>:<version>
    inputs: dict[str, Any]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _value(element: ET.Element) -> Any:
    """The value of a ``wps:Input``: a literal (CDATA), a ``Reference`` href, or nested text."""
    for node in element.iter():
        if _local(node.tag) == "Reference":
            href = node.get(f"{{{XLINK}}}href") or node.get("href")
            if href:
                return href
    for node in element.iter():
        if _local(node.tag) == "LiteralValue":
            return _literal(node.text or "")
    for node in element.iter():
        if _local(node.tag) == "Data":
            return _literal("".join(node.itertext()))
    return _literal(element.text or "")


def _literal(text: str) -> Any:
    """JSON arrays and objects are decoded (lists of URLs); scalars stay strings, so that a
    text input keeps its exact spelling (numbers are converted by the input's data type)."""
    stripped = text.strip()
    if stripped[:1] in ("[", "{"):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            pass
    return stripped


def parse_execute(body: bytes) -> ExecuteRequest:
    """Parse a WPS 2.0 ``wps:Execute`` document; MaapError(400) names what is wrong."""
    if not body.strip():
        raise MaapError(400, "the request body is empty; send a WPS Execute XML document")
    if b"<!DOCTYPE" in body[:4096].upper() or b"<!ENTITY" in body.upper():
        raise MaapError(400, "XML with a DOCTYPE or entities is not accepted")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise MaapError(400, f"the request body is not well-formed XML: {exc}") from None
    if _local(root.tag) != "Execute":
        raise MaapError(400, f"expected a wps:Execute document, got <{_local(root.tag)}>")
    identifier = None
    inputs: dict[str, Any] = {}
    for child in root:
        name = _local(child.tag)
        if name == "Identifier" and identifier is None:
            identifier = (child.text or "").strip()
        elif name == "Input":
            input_id = child.get("id") or ""
            if not input_id:
                raise MaapError(400, "every wps:Input needs an id attribute")
            inputs[input_id] = _value(child)
    if not identifier:
        raise MaapError(
            400, "the Execute document has no ows:Identifier (job-<algorithm>:<version>)"
        )
    return ExecuteRequest(identifier=identifier, inputs=inputs)

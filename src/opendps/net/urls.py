"""The one parser of file-input values, used at submit and at localize, and the
redaction of credentials embedded in URLs.

A file input's value is a URL, an absolute path, a list of them, a JSON array string,
an OGC link ``{"href": …}``, or a comma-separated string. A string is split on commas
only when every piece is a URL or an absolute path (a comma may be part of one URL,
``…?bbox=1,2,3,4``). Submit and localize must agree on this: when they did not,
``"http://host/ok.txt,/etc/passwd"`` was one (remote) value at submit and two at
localize, and a local file slipped past the submit-time policy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from opendps.errors import InvalidInput

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
#: ``scheme://user:password@host`` anywhere in a text (logs, messages).
_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/\s@:]*(?::[^/\s@]*)?@")


def scheme_of(url: str) -> str:
    """``"https"``, ``"s3"``, … ; ``"file"`` for an absolute path; ``""`` when neither."""
    if url.startswith("/"):
        return "file"
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else ""


def is_url_or_path(text: str) -> bool:
    return bool(scheme_of(text))


def parse_urls(value: Any, input_name: str = "input") -> list[str]:
    """A file input's value as a list of URLs; InvalidInput naming the input otherwise."""
    if value is None:
        return []
    if isinstance(value, Mapping):
        if isinstance(value.get("href"), str):  # an OGC link {"href": …}
            return parse_urls(value["href"], input_name)
        raise InvalidInput(f"input {input_name!r}: give a URL, not an object", input=input_name)
    if isinstance(value, list | tuple):
        return [url for item in value for url in parse_urls(item, input_name)]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidInput(f"input {input_name!r}: give a URL or a list of URLs", input=input_name)
    text = str(value).strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            items = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise InvalidInput(
                f"input {input_name!r}: not a valid JSON array of URLs ({exc})"
            ) from None
        return parse_urls(items if isinstance(items, list) else [items], input_name)
    parts = [part.strip() for part in text.split(",")]
    if len(parts) > 1 and all(is_url_or_path(p) for p in parts if p):
        urls = [p for p in parts if p]
    else:
        urls = [text]
    for url in urls:
        if not is_url_or_path(url):
            raise InvalidInput(
                f"input {input_name!r} is a file input: give a URL (https, http, s3) or a "
                f"list of them; got {redact(url)!r}"
            )
    return urls


def redact(text: str | None) -> str | None:
    """``https://user:token@host/x`` → ``https://***@host/x``, anywhere in ``text``."""
    if not text:
        return text
    return _CREDENTIALS.sub(r"\1***@", text)

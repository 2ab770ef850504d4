"""Execute request bodies: the members of an OGC execute request (its inputs are decoded
by api/ogc/inputs.py and checked by the service)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from opendps.api.bodies import read_json
from opendps.errors import InvalidInput
from opendps.service.inputs import parse_priority


@dataclass(frozen=True)
class ExecuteBody:
    outputs: dict[str, Any] = field(default_factory=dict)
    response: str | None = None  # "raw" | "document"; None when the request left it out
    queue: str | None = None
    priority: int = 5
    tags: list[str] = field(default_factory=list)
    dedup: bool = False
    subscriber: dict[str, Any] = field(default_factory=dict)
    raw_inputs: dict[str, Any] = field(default_factory=dict)  # as sent (OGC encodings)
    notify: Any = None  # DESIGN §14 {"email", "webhook", "on"}, checked by parse_notify


def _tags(body: dict[str, Any]) -> list[str]:
    tags = body.get("tags") or []
    if not isinstance(tags, list):
        tags = [tags]
    tag = body.get("tag")
    if tag:
        tags = [str(tag), *[t for t in tags if t != tag]]
    return [str(t) for t in tags]


def parse_execute(body: Any) -> ExecuteBody:
    if not isinstance(body, dict):
        raise InvalidInput("the execute request must be a JSON object with an 'inputs' member")
    inputs = body.get("inputs") or {}
    if isinstance(inputs, list):  # OGC 1.0 drafts / WPS-style [{"id": …, "value": …}]
        inputs = {i.get("id"): i.get("value", i.get("href")) for i in inputs if isinstance(i, dict)}
    if not isinstance(inputs, dict):
        raise InvalidInput("'inputs' must be an object mapping input ids to values")
    priority = parse_priority(body.get("priority", 5))
    dedup = body.get("dedup", False)
    if isinstance(dedup, str):
        dedup = dedup.strip().lower() in {"true", "1", "yes"}
    response = body.get("response")
    if response not in (None, "raw", "document"):
        raise InvalidInput(f"response must be 'raw' or 'document'; got {response!r}")
    outputs = body.get("outputs") or {}
    if isinstance(outputs, list):  # draft form [{"id": ..., "transmissionMode": ...}]
        outputs = {o.get("id"): o for o in outputs if isinstance(o, dict) and o.get("id")}
    if not isinstance(outputs, dict):
        raise InvalidInput("'outputs' must be an object mapping output ids to their options")
    subscriber = body.get("subscriber") or {}
    if not isinstance(subscriber, dict):
        raise InvalidInput(
            "'subscriber' must be an object with successUri, failedUri, inProgressUri"
        )
    queue = body.get("queue") or None
    if queue is not None and not isinstance(queue, str):
        raise InvalidInput(f"queue must be a queue name; got {queue!r}")
    return ExecuteBody(
        outputs=outputs,
        response=response,
        queue=queue,
        priority=priority,
        tags=_tags(body),
        dedup=bool(dedup),
        subscriber=subscriber,
        raw_inputs=dict(inputs),
        notify=body.get("notify"),
    )


async def decode_execute_body(request: Request) -> ExecuteBody:
    body = await read_json(request, "execute request", empty={})
    return parse_execute(body)

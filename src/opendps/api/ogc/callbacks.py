"""Callbacks (the OGC 1.0 ``callback`` class): an execute request's ``subscriber`` URIs
are POSTed to as its job changes state.

- ``inProgressUri``: the statusInfo, when the job starts running;
- ``successUri``: the results document (every output), when it succeeds;
- ``failedUri``: the exception document, when it fails.

The subscriber is kept in the store as a subscription; the delivery loop on the executor
side (executors/delivery.py) sends each notification, with retries and back-off, so a
server restart loses none. This module checks the subscriber at submit.
"""

from __future__ import annotations

import logging
from typing import Any

from opendps.errors import InvalidInput
from opendps.net.safety import UrlPolicy

log = logging.getLogger(__name__)
URI_KEYS = ("successUri", "failedUri", "inProgressUri")
POLL_SECONDS = 0.5
TRIES = 3
TIMEOUT = 10.0


def check_subscriber(subscriber: dict[str, Any], policy: UrlPolicy | None = None) -> dict[str, str]:
    """The subscriber's http(s) URIs (``successUrl``, the schema's typo, is accepted);
    loopback and private addresses only where the policy allows them."""
    if "successUrl" in subscriber and "successUri" not in subscriber:
        subscriber = {**subscriber, "successUri": subscriber["successUrl"]}
    uris = {}
    for key in URI_KEYS:
        value = subscriber.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value.startswith(("http://", "https://")):
            raise InvalidInput(f"subscriber.{key} must be an http or https URL; got {value!r}")
        if policy is not None:
            policy.check_host_literal(value, f"subscriber.{key}")
        uris[key] = value
    return uris

"""``notify`` on a job or batch submission (DESIGN §14): checked at submit, kept as a
subscription in the store; the executor side's delivery loop (executors/delivery.py) sends.

``on`` lists when to tell: ``finished`` = whenever it ends (any outcome), ``failed`` = only
when it ends with a failure (a job failed or dismissed; a batch with any such job). A job
or batch sends at most one message per end, whatever ``on`` lists.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opendps.errors import InvalidInput

if TYPE_CHECKING:
    from opendps.settings import Settings

EVENTS = ("finished", "failed")
MAX_ADDRESSES = 20
_ADDRESS = re.compile(r"[^@\s,<>]+@[^@\s,<>]+")


@dataclass(frozen=True)
class Notify:
    email: tuple[str, ...] = ()
    webhook: str | None = None
    on: tuple[str, ...] = ("finished",)


def parse_notify(value: Any, settings: Settings) -> Notify | None:
    """The submission's ``notify`` object, checked; None when absent."""
    if value is None or value == {}:
        return None
    if not isinstance(value, Mapping):
        raise InvalidInput('notify must be an object: {"email": [...], "webhook": "https://…"}')
    unknown = sorted(set(value) - {"email", "webhook", "on"})
    if unknown:
        raise InvalidInput(f"notify: unknown member(s) {unknown}; use email, webhook, on")
    email = value.get("email") or []
    if isinstance(email, str):
        email = [email]
    if not isinstance(email, list) or len(email) > MAX_ADDRESSES:
        raise InvalidInput(f"notify.email must be a list of at most {MAX_ADDRESSES} addresses")
    for address in email:
        if not isinstance(address, str) or not _ADDRESS.fullmatch(address):
            raise InvalidInput(f"notify.email: {address!r} is not an e-mail address")
    if email and not settings.smtp_url:
        raise InvalidInput("notify.email: this server sends no e-mail (its smtp_url is not set)")
    webhook = value.get("webhook")
    if webhook is not None and (
        not isinstance(webhook, str) or not webhook.startswith(("http://", "https://"))
    ):
        raise InvalidInput(f"notify.webhook must be an http(s) URL; got {webhook!r}")
    on = value.get("on") or ["finished"]
    if isinstance(on, str):
        on = [on]
    if not isinstance(on, list) or not on or any(e not in EVENTS for e in on):
        raise InvalidInput(f"notify.on must list some of {', '.join(EVENTS)}; got {on!r}")
    if not email and not webhook:
        raise InvalidInput("notify needs an 'email' list or a 'webhook' URL")
    return Notify(email=tuple(email), webhook=webhook, on=tuple(dict.fromkeys(on)))


def wanted(events: Sequence[str], failed: bool) -> bool:
    """Whether an end (with or without failures) is one the subscriber asked for."""
    return "finished" in events or (failed and "failed" in events)

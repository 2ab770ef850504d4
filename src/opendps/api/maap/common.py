"""Small pieces every MAAP route shares: errors, booleans, process ids, queues."""

from __future__ import annotations

import math
from typing import Any

from opendps.errors import InvalidInput, NoSuchProcess, OpenDPSError
from opendps.models import Algorithm, JobStatus
from opendps.service.context import Services
from opendps.service.statuses import parse_status

TRUE_WORDS = {"true", "1", "yes", "on", "t", "y"}
FALSE_WORDS = {"false", "0", "no", "off", "f", "n", ""}
#: Status words MAAP knows that have no job here: a filter on them matches nothing.
NEVER_MATCHING = {"deduped", "job-deduped"}


class MaapError(OpenDPSError):
    """A MAAP-dialect error with its own HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_bool(value: Any, name: str, default: bool = False) -> bool:
    """``True``, ``true``, ``1``, ``yes``… (maap-py sends Python's ``True``/``False``)."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise MaapError(400, f"{name}: {value!r} is not a boolean (use true or false)")


def parse_int(
    value: Any, name: str, *, low: int | None = None, high: int | None = None
) -> int | None:
    if value is None or str(value).strip() == "":
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        raise MaapError(400, f"{name}: {value!r} is not an integer") from None
    if (low is not None and number < low) or (high is not None and number > high):
        raise MaapError(400, f"{name}: {number} is out of range ({low}..{high})")
    return number


def parse_float(value: Any, name: str) -> float | None:
    """A finite, non-negative number (durations)."""
    if value is None or str(value).strip() == "":
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        raise MaapError(400, f"{name}: {value!r} is not a number") from None
    if not math.isfinite(number) or number < 0:
        raise MaapError(400, f"{name}: {value!r} must be a finite number >= 0")
    return number


def parse_status_filter(words: str | None) -> tuple[tuple[JobStatus, ...], bool]:
    """Status words in OGC, WPS or HySDS spelling, comma-separated.

    Answers the statuses and whether the filter can match anything at all.
    """
    if not words:
        return (), True
    statuses: list[JobStatus] = []
    matchable = False
    for word in words.split(","):
        word = word.strip()
        if not word:
            continue
        if word.lower() in NEVER_MATCHING:
            continue
        try:
            status = parse_status(word)
        except OpenDPSError:
            raise MaapError(
                400,
                f"Invalid status {word!r}: use accepted, running, successful, failed, dismissed "
                "(or the WPS names Accepted, Running, Succeeded, Failed, Dismissed, or the HySDS "
                "names job-queued, job-started, job-completed, job-failed, job-revoked)",
            ) from None
        matchable = True
        if status not in statuses:
            statuses.append(status)
    return tuple(statuses), matchable


def find_algorithm(services: Services, process_id: str) -> Algorithm:
    """MAAP's numeric ``processID``, ``name:version``, ``name`` or ``job-name:version``."""
    pid = process_id.strip()
    if pid.isdigit():
        try:
            return services.algorithms.get_by_id(int(pid))
        except NoSuchProcess:
            pass  # a name made of digits
    try:
        return services.algorithms.get(pid)
    except NoSuchProcess:
        if pid.startswith("job-"):
            return services.algorithms.get(pid[4:])
        raise NoSuchProcess(f"No process with processID {process_id!r} is deployed") from None


def queue_name(services: Services, requested: str | None, user: str) -> str | None:
    """The queue a MAAP submission means.

    MAAP queue names carry a ``maap-`` prefix (``maap-dps-worker-8gb``); when no queue
    of that exact name exists, the name without it is used, so notebooks keep working.
    With no queue given, a user who may not use the default queue gets the first guest
    queue instead.
    """
    settings = services.settings
    if requested is not None and not isinstance(requested, str):
        raise MaapError(400, f"queue must be a queue name (a string); got {requested!r}")
    if requested:
        requested = requested.strip()
        if settings.queue(requested) is None and requested.startswith("maap-"):
            bare = requested.removeprefix("maap-")
            if settings.queue(bare) is not None:
                return bare
        return requested
    default = settings.queue(settings.default_queue)
    if default is not None and not services.policy.may_use_queue(user, default):
        return next((q.name for q in services.policy.usable_queues(user)), None)
    return None


def queues_for(services: Services, user: str) -> list[str]:
    """The queue names this user may submit to."""
    return [q.name for q in services.policy.usable_queues(user)]


def check_queue(services: Services, name: str | None, user: str) -> None:
    """400 in MAAP's words when the user may not use the queue (or it does not exist)."""
    if name is None:
        return
    allowed = queues_for(services, user)
    if name in allowed:
        return
    listing = ", ".join(allowed) or "none"
    if services.settings.queue(name) is None:
        raise MaapError(
            400, f"FailedJobSubmit: Queue {name} does not exist. Available queues: {listing}"
        )
    raise MaapError(
        400,
        f"FailedJobSubmit: User {user} does not have access to queue {name}. "
        f"Available queues: {listing}",
    )


def decode_json_body(raw: bytes, what: str) -> Any:
    """The shared body rules (UTF-8, JSON, nesting depth), in MAAP's error shape."""
    from opendps.api.bodies import parse_json

    if not raw.strip():
        raise MaapError(400, f"the request body is empty; send the {what} as JSON")
    try:
        return parse_json(raw, what)
    except InvalidInput as exc:
        raise MaapError(400, exc.message) from None

"""The one query model of each listing (jobs, processes, batches).

Every dialect (OGC ``/jobs``, MAAP OGC-JSON and WPS, the web UI, the CLI through the
client) translates its own parameters into these records; the service applies the
caller's scope (``service.policy``) and hands the store its filters. So a filter means the
same at every door, and so does "whose jobs may I see".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from opendps.errors import InvalidInput
from opendps.models import JobStatus

MAX_LIMIT = 10000


@dataclass(frozen=True)
class JobQuery:
    """Which jobs, and which page of them (newest first, or in ``sort``'s order).

    ``process_ids`` are ``name``, ``name:version`` or a numeric process id (MAAP); several
    match any of them. ``owner`` narrows to one user's jobs, within what the caller may see
    (another user's name, for a non-admin, matches nothing). ``matches_nothing`` is a
    dialect's filter that no job here can satisfy (e.g. MAAP's ``deduped`` status).
    ``version`` narrows every process to that version; ``text`` matches a job id's
    beginning or part of its tag; ``after_seq`` keeps only jobs submitted after that one
    (the UI's "newer jobs" link). ``sort`` is a column of ``JobStore.SORTS`` (``-name``
    descending); ``count=False`` skips ``number_matched`` (-1) for a caller that counts
    with ``JobService.count_by_status``.
    """

    process_ids: tuple[str, ...] = ()
    statuses: tuple[JobStatus, ...] = ()
    queue: str | None = None
    tag: str | None = None
    batch: str | None = None
    priority: int | None = None
    owner: str | None = None
    job_ids: tuple[str, ...] = ()
    created_after: datetime | None = None
    created_before: datetime | None = None
    finished_after: datetime | None = None
    min_duration: float | None = None
    max_duration: float | None = None
    version: str | None = None
    text: str | None = None
    after_seq: int | None = None
    matches_nothing: bool = False
    limit: int = 10
    cursor: str | None = None  # keyset paging (OGC, UI)
    offset: int | None = None  # offset paging (MAAP)
    sort: str = "-created"
    count: bool = True


@dataclass(frozen=True)
class ProcessQuery:
    """Which algorithms: the catalogue is shared, so only filters (no scope)."""

    name: str | None = None
    version: str | None = None
    owner: str | None = None  # MAAP's ``deployer``
    limit: int = 1000
    cursor: str | None = None


@dataclass(frozen=True)
class BatchQuery:
    """Which batches (newest first): the caller's own, or everyone's for an admin."""

    owner: str | None = None
    limit: int = 25
    cursor: str | None = None


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be 1..{MAX_LIMIT}; got {limit}")
    return limit


def parse_instant(value: str | None, name: str = "datetime") -> datetime | None:
    """An RFC 3339 / ISO 8601 instant or a plain date; empty or ``..`` = open."""
    if value is None:
        return None
    text = value.strip()
    if text in ("", ".."):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{name}: {text!r} is not an RFC 3339 date-time") from None


def parse_interval(
    value: str | None, name: str = "datetime"
) -> tuple[datetime | None, datetime | None]:
    """OGC ``datetime``: an instant, ``a/b``, ``../b`` or ``a/..`` -> (start, end)."""
    if not value:
        return None, None
    if "/" in value:
        start, end = value.split("/", 1)
        return parse_instant(start, name), parse_instant(end, name)
    instant = parse_instant(value, name)
    return instant, instant

"""Status words of every dialect (DESIGN §3) -> JobStatus, and back."""

from __future__ import annotations

from opendps.errors import InvalidInput
from opendps.models import JobStatus

_WORDS = {
    JobStatus.ACCEPTED: ("accepted", "queued", "job-queued", "pending", "submitted"),
    JobStatus.RUNNING: ("running", "started", "job-started", "in-progress"),
    JobStatus.SUCCESSFUL: ("successful", "succeeded", "success", "job-completed", "completed"),
    JobStatus.FAILED: ("failed", "job-failed", "job-offline", "offline", "error"),
    JobStatus.DISMISSED: (
        "dismissed",
        "job-revoked",
        "revoked",
        "cancelled",
        "canceled",
        "deleted",
    ),
}
_LOOKUP = {word: status for status, words in _WORDS.items() for word in words}

WPS = {
    JobStatus.ACCEPTED: "Accepted",
    JobStatus.RUNNING: "Running",
    JobStatus.SUCCESSFUL: "Succeeded",
    JobStatus.FAILED: "Failed",
    JobStatus.DISMISSED: "Dismissed",
}
HYSDS = {
    JobStatus.ACCEPTED: "job-queued",
    JobStatus.RUNNING: "job-started",
    JobStatus.SUCCESSFUL: "job-completed",
    JobStatus.FAILED: "job-failed",
    JobStatus.DISMISSED: "job-revoked",
}


def parse_status(word: str) -> JobStatus:
    """Any dialect's spelling, case-insensitive."""
    status = _LOOKUP.get(word.strip().lower())
    if status is None:
        choices = ", ".join(s.value for s in JobStatus)
        raise InvalidInput(f"unknown status {word!r}; use one of {choices} (or WPS/HySDS names)")
    return status


def parse_statuses(words: list[str] | None) -> tuple[JobStatus, ...]:
    """Repeated parameters and comma-separated lists both work."""
    result: list[JobStatus] = []
    for word in words or []:
        for part in word.split(","):
            if part.strip():
                status = parse_status(part)
                if status not in result:
                    result.append(status)
    return tuple(result)

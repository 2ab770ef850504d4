"""One error tree for opendps.

Every error the service layer raises derives from :class:`OpenDPSError`. The
HTTP layer maps ``status`` and ``ogc_type`` to a problem-details answer, so
routes never catch errors themselves. A class's docstring is its default
message.
"""

from __future__ import annotations

OGC_EXCEPTIONS = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/"
OGC_PART2_EXCEPTIONS = "http://www.opengis.net/def/exceptions/ogcapi-processes-2/1.0/"


class OpenDPSError(Exception):
    """Something went wrong in opendps."""

    status: int = 500
    ogc_type: str | None = None

    def __init__(self, message: str | None = None, **context: object) -> None:
        self.message = message or (self.__doc__ or "").strip()
        self.context = context
        super().__init__(self.message)

    @property
    def type_uri(self) -> str:
        if self.ogc_type:
            if self.ogc_type.startswith(("http://", "https://")):
                return self.ogc_type
            return OGC_EXCEPTIONS + self.ogc_type
        return "about:blank"


class NotFound(OpenDPSError):
    """Not found."""

    status = 404


class NoSuchProcess(NotFound):
    """No such process (algorithm)."""

    ogc_type = "no-such-process"


class NoSuchJob(NotFound):
    """No such job."""

    ogc_type = "no-such-job"


class NoSuchQueue(OpenDPSError):
    """No such queue."""

    status = 400


class InvalidInput(OpenDPSError):
    """An input value is missing, unknown or of the wrong type."""

    status = 400
    ogc_type = "invalid-parameter-value"


class InvalidSpec(OpenDPSError):
    """The algorithm registration is invalid."""

    status = 400


class DuplicateProcess(OpenDPSError):
    """A process with this name and version is already registered."""

    status = 409
    ogc_type = OGC_PART2_EXCEPTIONS + "duplicated-process"


class ImmutableProcess(OpenDPSError):
    """This process is built in and cannot be changed."""

    status = 403
    ogc_type = OGC_PART2_EXCEPTIONS + "immutable-process"


class Conflict(OpenDPSError):
    """The request conflicts with the current state."""

    status = 409


class ResultNotReady(OpenDPSError):
    """The job has not finished yet."""

    status = 404
    ogc_type = "result-not-ready"


class Forbidden(OpenDPSError):
    """You may not do this."""

    status = 403


class Unauthorized(OpenDPSError):
    """Authentication required."""

    status = 401


class InvalidTransition(OpenDPSError):
    """The job is not in a state that allows this change."""

    status = 409


class UnsupportedMediaType(OpenDPSError):
    """Unsupported media type."""

    status = 415
    ogc_type = OGC_PART2_EXCEPTIONS + "unsupported-media-type"


class BuildError(OpenDPSError):
    """The algorithm could not be built."""


class LocalizeError(OpenDPSError):
    """An input file could not be downloaded."""


class StageError(OpenDPSError):
    """Outputs could not be uploaded to storage."""


class PayloadTooLarge(OpenDPSError):
    """The request body is too large."""

    status = 413


class ConfigError(OpenDPSError):
    """The server's configuration cannot work on this host."""

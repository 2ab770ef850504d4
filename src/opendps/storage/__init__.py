"""Output storage: a local folder by default, S3 (SeaweedFS, MinIO, AWS) when configured."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opendps.storage.base import InvalidKey, KeyNotFound, Storage, StoredFile, normalize_key
from opendps.storage.fsspec_store import FsspecStorage

if TYPE_CHECKING:
    from opendps.settings import Settings

__all__ = [
    "FsspecStorage",
    "InvalidKey",
    "KeyNotFound",
    "Storage",
    "StoredFile",
    "normalize_key",
    "open_storage",
    "storage_options",
]

S3_PROTOCOLS = ("s3://", "s3a://")


def storage_options(settings: Settings) -> dict[str, Any]:
    """s3fs keyword arguments from the ``s3_*`` settings; ``{}`` when none are set.

    Used for the output storage and for ``s3://`` input downloads alike. A custom
    endpoint (SeaweedFS, MinIO) gets path-style addressing, which those servers need;
    without an endpoint botocore's AWS defaults apply.
    """
    options: dict[str, Any] = {}
    if settings.s3_access_key:
        options["key"] = settings.s3_access_key
    if settings.s3_secret_key:
        options["secret"] = settings.s3_secret_key
    if settings.s3_endpoint_url:
        options["endpoint_url"] = settings.s3_endpoint_url
        options["config_kwargs"] = {"s3": {"addressing_style": "path"}}
    if options and settings.s3_region:
        options["client_kwargs"] = {"region_name": settings.s3_region}
    return options


def open_storage(settings: Settings) -> Storage:
    """The storage at ``settings.storage_url`` (a folder path, ``file://`` or ``s3://``)."""
    url = settings.storage_url or str(settings.data_dir / "storage")
    options = storage_options(settings) if url.startswith(S3_PROTOCOLS) else None
    return FsspecStorage(url, storage_options=options)

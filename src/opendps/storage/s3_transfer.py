"""Uploads to S3 with boto3's transfer manager: multipart with parts sent in parallel.

s3fs writes a file as a multipart upload one part at a time over one connection; boto3's
``upload_file`` sends ``max_concurrency`` parts at once, which is what makes large outputs
stage at the storage's speed (issue #10: 0.58x of boto3 before). The client is built from
the same s3fs-shaped options as the rest of the storage (``storage_options``), once per
process: boto3 clients are thread-safe but must not cross a fork.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# 8 MiB parts (S3's minimum is 5 MiB), ten in flight: boto3's defaults, written down so a
# change of boto3 does not change our speed silently.
PART_SIZE = 8 * 1024 * 1024
MAX_CONCURRENCY = 10
_clients: dict[tuple[int, str], Any] = {}
_lock = threading.Lock()


def transfer_config() -> Any:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_threshold=PART_SIZE,
        multipart_chunksize=PART_SIZE,
        max_concurrency=MAX_CONCURRENCY,
        use_threads=True,
    )


def s3_client(options: Mapping[str, Any]) -> Any:
    """A boto3 S3 client for s3fs-style ``options`` (key, secret, endpoint_url,
    client_kwargs.region_name, config_kwargs.s3), cached per process."""
    import boto3
    from botocore.config import Config

    cache_key = (os.getpid(), repr(sorted(options.items(), key=lambda kv: kv[0])))
    with _lock:
        client = _clients.get(cache_key)
        if client is None:
            config_kwargs = dict(options.get("config_kwargs") or {})
            config_kwargs.setdefault("max_pool_connections", MAX_CONCURRENCY + 2)
            config_kwargs.setdefault("signature_version", "s3v4")
            client = boto3.session.Session().client(
                "s3",
                aws_access_key_id=options.get("key"),
                aws_secret_access_key=options.get("secret"),
                endpoint_url=options.get("endpoint_url"),
                region_name=(options.get("client_kwargs") or {}).get("region_name"),
                config=Config(**config_kwargs),
            )
            _clients[cache_key] = client
    return client


def upload_file(
    options: Mapping[str, Any],
    source: Path,
    bucket_and_key: str,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Upload ``source`` to ``bucket/key`` (multipart, parallel above one part)."""
    bucket, _, key = bucket_and_key.partition("/")
    extra = {"Metadata": {k: _ascii(v) for k, v in metadata.items()}} if metadata else None
    s3_client(options).upload_file(
        str(source), bucket, key, ExtraArgs=extra, Config=transfer_config()
    )


def _ascii(value: str) -> str:
    """S3 user metadata travels in HTTP headers: keep it printable ASCII."""
    return str(value).encode("ascii", "backslashreplace").decode("ascii")[:1024]

"""Staging to S3: large files go up as parallel multipart uploads and every staged object
carries who and what made it (user, algorithm, version, job id, tag) as user metadata."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pytest

from opendps.storage import FsspecStorage
from opendps.storage.s3_transfer import PART_SIZE, s3_client
from tests.support.s3_server import S3Server

pytestmark = pytest.mark.s3


def _storage(s3_server: S3Server) -> FsspecStorage:
    return FsspecStorage(
        s3_server.url(f"staging-{uuid.uuid4().hex[:8]}"),
        storage_options=s3_server.storage_options(),
    )


def test_a_file_of_several_parts_round_trips_byte_for_byte(
    s3_server: S3Server, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    data = os.urandom(PART_SIZE * 3 + 12345)  # four parts, the last one short
    (out / "big.bin").write_bytes(data)
    storage = _storage(s3_server)
    [stored] = storage.put_dir(out, "job")
    assert stored.size == len(data)
    with storage.open("job/big.bin") as handle:
        assert hashlib.sha256(handle.read()).digest() == hashlib.sha256(data).digest()
    client = s3_client(s3_server.storage_options())
    bucket, _, key = stored.url.removeprefix("s3://").partition("/")
    etag = client.head_object(Bucket=bucket, Key=key)["ETag"]
    assert etag.strip('"').endswith("-4")  # S3 names a multipart upload's ETag by its parts


def test_staged_objects_carry_the_job_s_metadata(s3_server: S3Server, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_text("a")
    storage = _storage(s3_server)
    metadata = {
        "dps-user": "alice",
        "dps-algorithm": "demo",
        "dps-version": "main",
        "dps-job-id": "j-1",
        "dps-tag": "café",  # non-ASCII survives as an escape, never breaks the upload
    }
    [stored] = storage.put_dir(out, "job", metadata)
    bucket, _, key = stored.url.removeprefix("s3://").partition("/")
    head = s3_client(s3_server.storage_options()).head_object(Bucket=bucket, Key=key)
    assert head["Metadata"]["dps-user"] == "alice"
    assert head["Metadata"]["dps-job-id"] == "j-1"
    assert head["Metadata"]["dps-tag"] == "caf\\xe9"

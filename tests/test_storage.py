"""The storage contract, run on a local folder, a file:// URL and SeaweedFS S3."""

from __future__ import annotations

import multiprocessing
import os
import uuid
from pathlib import Path

import pytest

from opendps.errors import InvalidInput, NotFound
from opendps.settings import Settings
from opendps.storage import (
    FsspecStorage,
    InvalidKey,
    KeyNotFound,
    Storage,
    StoredFile,
    normalize_key,
    open_storage,
    storage_options,
)
from tests.support.s3_server import S3Server

PREFIX = "anonymous/dps_output/algo/1.0/2026/11/23/10/00/00/123456"


@pytest.fixture(params=["folder", "file_url", pytest.param("s3", marks=pytest.mark.s3)])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "folder":
        return FsspecStorage(str(tmp_path / "storage"))
    if request.param == "file_url":
        return FsspecStorage(f"file://{tmp_path}/storage/")
    server: S3Server = request.getfixturevalue("s3_server")
    return FsspecStorage(server.url(uuid.uuid4().hex), server.storage_options())


@pytest.fixture
def output_dir(tmp_path: Path) -> Path:
    """A job's output/ folder: nested, with an empty file and a 12 MiB one (multipart on S3)."""
    out = tmp_path / "output"
    (out / "sub" / "deeper").mkdir(parents=True)
    (out / "a.txt").write_text("alpha")
    (out / "empty").write_bytes(b"")
    (out / "sub" / "b.bin").write_bytes(os.urandom(12 << 20))
    (out / "sub" / "deeper" / "c d.txt").write_text("gamma")
    return out


def test_put_dir_and_list(storage: Storage, output_dir: Path) -> None:
    stored = storage.put_dir(output_dir, PREFIX)
    expected = [
        ("a.txt", 5), ("empty", 0), ("sub/b.bin", 12 << 20), ("sub/deeper/c d.txt", 5),
    ]  # fmt: skip
    assert [(f.path, f.size) for f in stored] == expected
    assert all(f.url == storage.url_for(f"{PREFIX}/{f.path}") for f in stored)
    assert storage.list(PREFIX) == stored
    assert [f.path for f in storage.list(f"{PREFIX}/sub")] == ["b.bin", "deeper/c d.txt"]
    assert storage.list(f"{PREFIX}/nothing-here") == []


def test_list_is_folder_based(storage: Storage, tmp_path: Path) -> None:
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "f.txt").write_text("x")
    storage.put_dir(folder, "p/a")
    storage.put_dir(folder, "p/ab")
    assert [f.path for f in storage.list("p/a")] == ["f.txt"]
    assert [f.path for f in storage.list("p")] == ["a/f.txt", "ab/f.txt"]


def test_open_streams_back(storage: Storage, output_dir: Path) -> None:
    storage.put_dir(output_dir, PREFIX)
    with storage.open(f"{PREFIX}/sub/b.bin") as stream:
        chunks = iter(lambda: stream.read(1 << 20), b"")
        assert b"".join(chunks) == (output_dir / "sub" / "b.bin").read_bytes()
    with storage.open(f"{PREFIX}/empty") as stream:
        assert stream.read() == b""
    with pytest.raises(KeyNotFound) as info:
        storage.open(f"{PREFIX}/absent")
    assert isinstance(info.value, NotFound) and isinstance(info.value, FileNotFoundError)


def test_exists(storage: Storage, output_dir: Path) -> None:
    storage.put_dir(output_dir, PREFIX)
    assert storage.exists(f"{PREFIX}/sub/deeper/c d.txt")
    assert not storage.exists(f"{PREFIX}/absent.txt")
    assert not storage.exists(f"{PREFIX}/sub")  # a folder is not a file


def test_put_dir_again_overwrites(storage: Storage, tmp_path: Path) -> None:
    folder = tmp_path / "again"
    folder.mkdir()
    (folder / "f.txt").write_text("first")
    storage.put_dir(folder, "p")
    (folder / "f.txt").write_text("second!")
    [stored] = storage.put_dir(folder, "p")
    assert stored.size == 7
    with storage.open("p/f.txt") as stream:
        assert stream.read() == b"second!"


def test_url_for(storage: Storage) -> None:
    base = storage.url
    assert not base.endswith("/")
    assert base.startswith(("file:///", "s3://"))
    assert storage.url_for(PREFIX) == f"{base}/{PREFIX}"
    assert storage.url_for(f"{PREFIX}/x.tif") == f"{base}/{PREFIX}/x.tif"


@pytest.mark.parametrize("key", ["../x", "a/../../x", "/etc/passwd", "a/..", "x\0y"])
def test_keys_cannot_escape_the_base(storage: Storage, key: str, tmp_path: Path) -> None:
    for call in (storage.open, storage.exists, storage.url_for, storage.list):
        with pytest.raises(InvalidKey) as info:
            call(key)
        assert isinstance(info.value, ValueError) and isinstance(info.value, InvalidInput)
    with pytest.raises(InvalidKey):
        storage.put_dir(tmp_path, key)
    with pytest.raises(InvalidKey):
        storage.delete_prefix(key)


def test_delete_prefix(storage: Storage, output_dir: Path) -> None:
    storage.put_dir(output_dir, "p/a")
    storage.put_dir(output_dir, "p/ab")
    storage.delete_prefix("p/a")
    assert storage.list("p/a") == []
    assert len(storage.list("p/ab")) == 4  # the sibling with the same string prefix stays
    storage.delete_prefix("p/never-written")  # absent is fine
    with pytest.raises(InvalidKey, match="whole storage"):
        storage.delete_prefix("")


def test_put_dir_skips_links_out_and_special_files(storage: Storage, tmp_path: Path) -> None:
    secret = tmp_path / "secret.key"
    secret.write_text("do not publish")
    out = tmp_path / "out"
    out.mkdir()
    (out / "data.txt").write_text("data")
    (out / "inside").symlink_to(out / "data.txt")
    (out / "outside").symlink_to(secret)
    (out / "linked-dir").symlink_to(tmp_path, target_is_directory=True)
    os.mkfifo(out / "pipe")  # reading it would block staging forever
    assert [f.path for f in storage.put_dir(out, "p")] == ["data.txt", "inside"]


# -- keys, settings -------------------------------------------------------------------------


def test_normalize_key() -> None:
    assert normalize_key("a//b/./c/") == "a/b/c"
    assert normalize_key("", allow_empty=True) == ""
    with pytest.raises(InvalidKey, match="empty"):
        normalize_key("./")


def test_open_storage_from_settings(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    storage = open_storage(settings)
    assert storage.url == f"file://{tmp_path.resolve()}/storage"
    assert storage_options(settings) == {}


@pytest.mark.s3
def test_open_storage_on_s3(s3_server: S3Server, tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        storage_url=s3_server.url("from-settings"),
        s3_endpoint_url=s3_server.endpoint_url,
        s3_access_key=s3_server.key,
        s3_secret_key=s3_server.secret,
    )
    assert storage_options(settings) == s3_server.storage_options()
    storage = open_storage(settings)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x.txt").write_text("x")
    assert storage.put_dir(tmp_path / "out", "job") == [
        StoredFile("x.txt", 1, f"s3://{s3_server.bucket}/from-settings/job/x.txt")
    ]


def _stage_in_child(storage: Storage, folder: Path) -> None:
    files = storage.put_dir(folder, "forked")
    os._exit(0 if [f.path for f in storage.list("forked")] == [f.path for f in files] else 3)


def test_usable_in_a_forked_child(storage: Storage, output_dir: Path) -> None:
    """Jobs run in forked supervisors that reuse the parent's storage object."""
    storage.list("")  # the parent has used it (for S3: started its event loop)
    child = multiprocessing.get_context("fork").Process(
        target=_stage_in_child, args=(storage, output_dir)
    )
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert len(storage.list("forked")) == 4

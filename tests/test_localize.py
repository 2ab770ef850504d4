"""Input localization against a real HTTP server and a real S3 server (SeaweedFS)."""

from __future__ import annotations

import os
import re
import shutil
import stat
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

from opendps.errors import LocalizeError
from opendps.runner.localize import (
    LocalizeCancelled,
    localize_inputs,
    parse_urls,
    plan_downloads,
    url_basename,
)
from tests.support.http_server import HttpFiles
from tests.support.s3_server import S3Server


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """(input_dir, cache_dir) of one job."""
    return tmp_path / "job" / "input", tmp_path / "cache"


def localize(dirs: tuple[Path, Path], inputs: dict, **kwargs):
    input_dir, cache_dir = dirs
    return localize_inputs(inputs, input_dir, cache_dir, **kwargs)


# -- values and names -------------------------------------------------------------------


def test_values_as_list_json_array_and_comma_separated() -> None:
    urls = ["https://h/a.tif", "s3://b/k/c.tif"]
    assert parse_urls(urls) == urls
    assert parse_urls('["https://h/a.tif", "s3://b/k/c.tif"]') == urls
    assert parse_urls("https://h/a.tif, s3://b/k/c.tif") == urls
    assert parse_urls(None) == [] and parse_urls("") == [] and parse_urls("  ") == []
    # A comma inside one URL is not a separator.
    assert parse_urls("https://h/x?bbox=1,2,3,4") == ["https://h/x?bbox=1,2,3,4"]


def test_bad_values_fail_before_any_download() -> None:
    with pytest.raises(LocalizeError, match=r"'granule' is a file input: give a URL"):
        parse_urls("relative/path.tif", "granule")
    with pytest.raises(LocalizeError, match="unsupported URL scheme"):
        parse_urls("nosuchscheme://x/y")
    with pytest.raises(LocalizeError, match="JSON array"):
        parse_urls("[not json")


def test_file_names_from_urls() -> None:
    assert url_basename("https://h/dir/a%20b.tif?sig=x&e=1") == "a b.tif"
    assert url_basename("https://h/a%2Fb.tif") == "a_b.tif"  # never a sub-folder
    assert url_basename("https://h/") == ""
    assert url_basename("/data/x.nc") == "x.nc"
    plan = plan_downloads(
        {
            "a": ["https://h/1/x.tif", "https://h/2/x.tif", "https://h/1/x.tif"],
            "b": "https://h/3/x.tif",
            "c": ["https://h/1/y.tar.gz", "https://h/2/y.tar.gz"],
            "d": "https://h/",
        }
    )
    assert [name for _, _, name in plan] == [
        "x.tif", "x_1.tif", "x.tif", "x_2.tif", "y.tar.gz", "y_1.tar.gz", "d",
    ]  # fmt: skip


# -- http(s) --------------------------------------------------------------------------------


def test_single_file(http_files: HttpFiles, dirs: tuple[Path, Path]) -> None:
    http_files.add("x.tif", b"tiff bytes")
    report = localize(dirs, {"granule": http_files.url("x.tif") + "?token=abc"})
    [download] = report.downloads
    assert download.path == dirs[0] / "x.tif"
    assert download.path.read_bytes() == b"tiff bytes"
    assert (download.input, download.bytes, download.cached, download.attempts) == (
        "granule", 10, False, 1,
    )  # fmt: skip
    assert report.total_bytes == 10 and report.seconds > 0 and report.rate > 0
    # Nothing half-written is left behind.
    assert sorted(p.name for p in dirs[0].iterdir()) == ["x.tif"]


def test_list_json_and_empty_values(http_files: HttpFiles, dirs: tuple[Path, Path]) -> None:
    for name in ("a.txt", "b.txt", "c.txt"):
        http_files.add(name, name.encode())
    report = localize(
        dirs,
        {
            "many": [http_files.url("a.txt"), http_files.url("b.txt")],
            "json": f'["{http_files.url("c.txt")}"]',
            "unset": None,
            "blank": "",
        },
    )
    assert [(d.input, d.path.name) for d in report.downloads] == [
        ("many", "a.txt"), ("many", "b.txt"), ("json", "c.txt"),
    ]  # fmt: skip
    assert all(d.path.read_bytes() == d.path.name.encode() for d in report.downloads)


def test_same_basename_from_two_urls(http_files: HttpFiles, dirs: tuple[Path, Path]) -> None:
    http_files.add("one/x.tif", b"first")
    http_files.add("two/x.tif", b"second")
    report = localize(dirs, {"a": http_files.url("one/x.tif"), "b": http_files.url("two/x.tif")})
    assert (dirs[0] / "x.tif").read_bytes() == b"first"
    assert (dirs[0] / "x_1.tif").read_bytes() == b"second"
    assert [d.path.name for d in report.downloads] == ["x.tif", "x_1.tif"]


def test_cache_hit_copies_without_downloading(http_files: HttpFiles, tmp_path: Path) -> None:
    http_files.add("x.tif", os.urandom(4096))
    cache = tmp_path / "cache"
    first = localize_inputs({"f": http_files.url("x.tif")}, tmp_path / "job1", cache)
    second = localize_inputs({"f": http_files.url("x.tif")}, tmp_path / "job2", cache)
    assert http_files.requests("x.tif") == 1
    [hit] = second.downloads
    assert (hit.cached, hit.attempts, hit.bytes) == (True, 0, 4096)
    a, b = first.downloads[0].path.stat(), hit.path.stat()
    assert a.st_ino != b.st_ino  # a copy (or reflink), never a hard link to the cache
    # A job appending to its input changes neither the cache nor the next job's copy.
    with hit.path.open("ab") as handle:
        handle.write(b"POISON")
    third = localize_inputs({"f": http_files.url("x.tif")}, tmp_path / "job3", cache)
    assert third.downloads[0].path.read_bytes() == first.downloads[0].path.read_bytes()
    [cached] = [p for p in cache.rglob("x.tif")]
    assert not stat.S_IMODE(cached.stat().st_mode) & 0o222


def test_cache_on_another_device_is_copied(http_files: HttpFiles, tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on a different file system than tmp")
    http_files.add("x.tif", b"copied")
    input_dir = shm / f"opendps-test-{uuid.uuid4().hex}"
    try:
        report = localize_inputs({"f": http_files.url("x.tif")}, input_dir, tmp_path / "c")
        [download] = report.downloads
        assert download.path.read_bytes() == b"copied"
        assert download.path.stat().st_mode & 0o200  # a private copy: writable
    finally:
        shutil.rmtree(input_dir, ignore_errors=True)


def test_concurrent_jobs_share_one_download(http_files: HttpFiles, tmp_path: Path) -> None:
    http_files.add("big.bin", 2 << 20)
    http_files.throttle("big.bin", 4 << 20)  # ~0.5 s, so the two jobs overlap
    cache, reports = tmp_path / "cache", {}

    def job(n: int) -> None:
        reports[n] = localize_inputs({"f": http_files.url("big.bin")}, tmp_path / f"j{n}", cache)

    threads = [threading.Thread(target=job, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert http_files.requests("big.bin") == 1
    assert sorted(r.downloads[0].cached for r in reports.values()) == [False, True]
    [cached] = cache.glob("*/big.bin")
    assert {r.downloads[0].path.read_bytes() for r in reports.values()} == {cached.read_bytes()}
    assert cached.stat().st_nlink == 1  # copies, not links


def test_404_fails_at_once(http_files: HttpFiles, dirs: tuple[Path, Path]) -> None:
    url = http_files.url("missing.tif")
    with pytest.raises(LocalizeError) as info:
        localize(dirs, {"f": url})
    assert str(info.value) == f"download of {url} failed: HTTP 404 Not Found"
    assert http_files.requests("missing.tif") == 1
    assert not list(dirs[1].rglob("*.part"))


def test_500_then_200_succeeds_on_retry(http_files: HttpFiles, dirs: tuple[Path, Path]) -> None:
    http_files.add("x.tif", b"ok")
    http_files.fail("x.tif", [500])
    [download] = localize(dirs, {"f": http_files.url("x.tif")}).downloads
    assert download.path.read_bytes() == b"ok"
    assert download.attempts == 2 and http_files.requests("x.tif") == 2


def test_429_honours_retry_after(http_files: HttpFiles, dirs: tuple[Path, Path]) -> None:
    http_files.add("x.tif", b"ok")
    http_files.fail("x.tif", [429], retry_after=1)
    started = time.monotonic()
    [download] = localize(dirs, {"f": http_files.url("x.tif")}).downloads
    assert time.monotonic() - started >= 0.95
    assert download.attempts == 2


def test_gives_up_after_tries(http_files: HttpFiles, dirs: tuple[Path, Path]) -> None:
    http_files.add("x.tif", b"ok")
    http_files.fail("x.tif", [503, 502])
    with pytest.raises(LocalizeError, match=r"failed after 2 tries: HTTP 502 Bad Gateway"):
        localize(dirs, {"f": http_files.url("x.tif")}, tries=2)
    assert http_files.requests("x.tif") == 2


def test_timeout_is_retried_then_fails(http_files: HttpFiles, dirs: tuple[Path, Path]) -> None:
    http_files.add("x.tif", b"ok")
    http_files.slow("x.tif", 5)
    started = time.monotonic()
    with pytest.raises(LocalizeError, match="after 2 tries: ReadTimeout"):
        localize(dirs, {"f": http_files.url("x.tif")}, tries=2, timeout=0.3)
    assert http_files.requests("x.tif") == 2
    assert time.monotonic() - started < 4


def test_deadline_bounds_the_phase(http_files: HttpFiles, dirs: tuple[Path, Path]) -> None:
    http_files.add("x.tif", b"ok")
    http_files.slow("x.tif", 10)
    started = time.monotonic()
    with pytest.raises(LocalizeError, match="time limit"):
        localize(dirs, {"f": http_files.url("x.tif")}, deadline=started + 0.5)
    assert time.monotonic() - started < 2
    with pytest.raises(LocalizeError, match="time limit"):  # already over: no request
        localize(dirs, {"g": http_files.url("y.tif")}, deadline=time.monotonic() - 1)
    assert http_files.requests("y.tif") == 0


def test_cancel_between_chunks(http_files: HttpFiles, dirs: tuple[Path, Path]) -> None:
    http_files.add("big.bin", 8 << 20)
    http_files.throttle("big.bin", 2 << 20)  # a 4-second download
    cancelled = threading.Event()
    threading.Timer(0.5, cancelled.set).start()
    started = time.monotonic()
    with pytest.raises(LocalizeCancelled, match=r"^cancelled$"):
        localize(dirs, {"f": http_files.url("big.bin")}, should_cancel=cancelled.is_set)
    assert time.monotonic() - started < 2
    assert not (dirs[0] / "big.bin").exists()
    assert not [p for p in dirs[1].rglob("*") if p.is_file() and p.name != ".lock"]


def test_broken_download_resumes_with_range(http_files: HttpFiles, dirs: tuple[Path, Path]) -> None:
    content = os.urandom(3 << 20)
    http_files.add("x.bin", content)
    http_files.truncate("x.bin", after=1 << 20)
    [download] = localize(dirs, {"f": http_files.url("x.bin")}).downloads
    assert download.path.read_bytes() == content
    assert download.attempts == 2
    first, second = http_files.request_headers("x.bin")
    assert "range" not in first and second["range"] == f"bytes={1 << 20}-"


@pytest.mark.slow
def test_200_mb_streams_with_flat_memory(http_files: HttpFiles, dirs: tuple[Path, Path]) -> None:
    size = 200 << 20
    http_files.add("big.bin", size)  # sparse, served from disk
    process = psutil.Process()
    baseline, peak, done = process.memory_info().rss, [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        report = localize(dirs, {"f": http_files.url("big.bin")})
    finally:
        done.set()
        sampler.join()
    growth = peak[0] - baseline
    print(
        f"\n200 MiB download: {report.seconds:.2f} s, {report.rate / 2**20:.0f} MiB/s, "
        f"RSS growth {growth / 2**20:.1f} MiB"
    )
    assert report.downloads[0].path.stat().st_size == size
    assert growth < 40 << 20


# -- local files ----------------------------------------------------------------------------


def test_file_urls_and_paths_are_copied(tmp_path: Path, dirs: tuple[Path, Path]) -> None:
    source = tmp_path / "my data" / "scene.nc"
    source.parent.mkdir()
    source.write_bytes(b"netcdf")
    url = "file://" + str(source).replace(" ", "%20")
    report = localize(dirs, {"a": url, "b": [str(source)]})
    # Two different URLs (a file:// one and a path) for one file: two names, both copies.
    assert [d.path.name for d in report.downloads] == ["scene.nc", "scene_1.nc"]
    assert source.stat().st_ino not in {d.path.stat().st_ino for d in report.downloads}
    assert source.stat().st_nlink == 1
    assert report.downloads[0].bytes == 6
    with pytest.raises(LocalizeError, match="no such file"):
        localize(dirs, {"a": str(tmp_path / "absent.nc")})


# -- s3:// ----------------------------------------------------------------------------------


@pytest.mark.s3
def test_s3_download(s3_server: S3Server, dirs: tuple[Path, Path]) -> None:
    content = os.urandom(3 << 20)
    key = f"{uuid.uuid4().hex}/granules/scene 1.h5"
    s3_server.filesystem().pipe(f"{s3_server.bucket}/{key}", content)
    options = s3_server.storage_options()
    report = localize(dirs, {"f": s3_server.url(key)}, storage_options=options)
    [download] = report.downloads
    assert download.path.name == "scene 1.h5" and download.path.read_bytes() == content
    assert (download.bytes, download.cached, download.attempts) == (len(content), False, 1)
    # Per-protocol options work too, and the second time is a cache hit.
    nested = localize(dirs, {"f": s3_server.url(key)}, storage_options={"s3": options})
    assert nested.downloads[0].cached


@pytest.mark.s3
def test_s3_missing_object_fails_at_once(s3_server: S3Server, dirs: tuple[Path, Path]) -> None:
    url = s3_server.url(f"{uuid.uuid4().hex}/absent.tif")
    started = time.monotonic()
    with pytest.raises(LocalizeError, match=re.escape(f"download of {url} failed: not found")):
        localize(dirs, {"f": url}, storage_options=s3_server.storage_options())
    assert time.monotonic() - started < 5

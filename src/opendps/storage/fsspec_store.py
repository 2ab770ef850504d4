"""Storage on a local folder (``/path``, ``file:///path``) or any fsspec URL (``s3://bucket/prefix``).

The local folder is handled with plain ``os`` calls (atomic renames, no fsspec quirks);
everything else goes through fsspec, which imports ``s3fs`` only when an ``s3://`` URL
is opened.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, cast

import fsspec

from opendps.storage.base import InvalidKey, KeyNotFound, StoredFile, join_key, normalize_key

log = logging.getLogger(__name__)

# Upload and read in blocks of this size: memory per open file stays bounded (and 8 MiB
# is above S3's 5 MiB minimum multipart part size).
BLOCK_SIZE = 8 * 1024 * 1024
# Suffix of files being written in a local storage folder; listings skip them.
PART_SUFFIX = ".opendps-part"


class FsspecStorage:
    """A :class:`~opendps.storage.base.Storage` rooted at ``url``.

    Parameters
    ----------
    url
        A local folder path, ``file:///abs/path``, or an fsspec URL such as
        ``s3://bucket/prefix``. The bucket must exist; a local folder is created on demand.
    storage_options
        Keyword arguments for the fsspec file system (for S3: ``key``, ``secret``,
        ``endpoint_url``, ``client_kwargs``, ``config_kwargs``).
    """

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        protocol, root = _split_url(url)
        self.protocol = protocol
        self._root = root
        self._local = protocol == "file"
        self._options = dict(storage_options or {})
        if self._local:
            self.url = "file://" + root
            return
        if protocol in ("s3", "s3a"):
            # Another process (a worker) writes what this one (the API) lists: a cached
            # listing would hide freshly staged outputs.
            self._options.setdefault("use_listings_cache", False)
        self.url = f"{protocol}://{root}"
        # Fail now on a missing driver (s3fs) or bad options, not at the first upload.
        fsspec.filesystem(protocol, **self._options)

    def __repr__(self) -> str:
        return f"FsspecStorage({self.url!r})"

    # -- the Storage protocol -------------------------------------------------------------

    def put_dir(
        self, local_dir: Path, prefix: str, metadata: Mapping[str, str] | None = None
    ) -> list[StoredFile]:
        prefix = normalize_key(prefix, allow_empty=True)
        stored = []
        for rel, source in _walk_files(Path(local_dir)):
            key = join_key(prefix, rel)
            size = self._put_file(source, key, metadata)
            stored.append(StoredFile(path=rel, size=size, url=self.url_for(key)))
        return stored

    def list(self, prefix: str) -> list[StoredFile]:
        prefix = normalize_key(prefix, allow_empty=True)
        base = self._path(prefix)
        found = self._find_local(base) if self._local else self._find_remote(base)
        files = [
            StoredFile(path=rel, size=size, url=self.url_for(join_key(prefix, rel)))
            for rel, size in found
        ]
        return sorted(files, key=lambda f: f.path)

    def open(self, key: str) -> BinaryIO:
        path = self._path(normalize_key(key))
        try:
            if self._local:
                if not os.path.isfile(path) or os.path.islink(path):
                    raise FileNotFoundError(path)
                # O_NOFOLLOW: what a job staged is a copy; a link here was not put by us.
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
                return os.fdopen(fd, "rb")  # the caller closes the stream
            return cast(BinaryIO, self._remote.open(path, "rb", block_size=BLOCK_SIZE))
        except FileNotFoundError:
            raise KeyNotFound(f"no stored file {key!r} in {self.url}")

    def exists(self, key: str) -> bool:
        path = self._path(normalize_key(key))
        if self._local:
            return os.path.isfile(path)
        return bool(self._remote.isfile(path))

    def url_for(self, key: str) -> str:
        key = normalize_key(key, allow_empty=True)
        return f"{self.url}/{key}" if key else self.url

    def delete_prefix(self, prefix: str) -> None:
        prefix = normalize_key(prefix, allow_empty=True)
        if not prefix:
            raise InvalidKey("refusing to delete the whole storage: give a non-empty prefix")
        path = self._path(prefix)
        if self._local:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            return
        # Delete exactly the listed files: a raw recursive rm of "a/b" on S3 could also
        # match the sibling "a/bc" (S3 prefixes are strings, not folders).
        paths = [self._path(join_key(prefix, f.path)) for f in self.list(prefix)]
        if paths:
            self._remote.rm(paths)

    # -- helpers --------------------------------------------------------------------------

    @property
    def _remote(self) -> fsspec.AbstractFileSystem:
        # Looked up per call, never kept: fsspec caches instances per process, and an s3fs
        # instance made before a fork refuses to work in the child ("not fork-safe").
        return fsspec.filesystem(self.protocol, **self._options)

    def _path(self, key: str) -> str:
        return f"{self._root}/{key}" if key else self._root

    def _put_file(self, source: Path, key: str, metadata: Mapping[str, str] | None = None) -> int:
        """Copy one file to ``key`` (S3: multipart in parallel, with user metadata)."""
        target = self._path(key)
        if self._local:
            return _copy_local(source, Path(target))
        if self.protocol in ("s3", "s3a"):
            from opendps.storage.s3_transfer import upload_file

            upload_file(self._options, source, target, metadata)
            return source.stat().st_size
        with (
            open(source, "rb") as src,
            self._remote.open(target, "wb", block_size=BLOCK_SIZE) as dst,
        ):
            shutil.copyfileobj(src, dst, BLOCK_SIZE)
        return source.stat().st_size

    def _find_local(self, base: str) -> list[tuple[str, int]]:
        root = Path(base)
        if not root.is_dir():
            return []
        found = []
        for dirpath, _dirs, names in os.walk(root):
            for name in names:
                if name.endswith(PART_SUFFIX):
                    continue
                full = Path(dirpath, name)
                info = full.lstat()
                if stat.S_ISREG(info.st_mode):
                    found.append((full.relative_to(root).as_posix(), info.st_size))
        return found

    def _find_remote(self, base: str) -> list[tuple[str, int]]:
        try:
            entries = self._remote.find(base, detail=True)
        except FileNotFoundError:
            return []
        found = []
        start = base.rstrip("/") + "/"
        for name, info in cast(dict[str, dict[str, Any]], entries).items():
            # find() on "a/b" may also report the object "a/b" itself or folder markers.
            if not name.startswith(start) or info.get("type") == "directory":
                continue
            found.append((name[len(start) :], int(info.get("size") or 0)))
        return found


def _split_url(url: str) -> tuple[str, str]:
    """``(protocol, root)``; a local root is an absolute path, a remote one ``bucket/prefix``."""
    if not url:
        raise ValueError("storage URL is empty")
    if "://" not in url:
        return "file", str(Path(url).expanduser().resolve())
    protocol, rest = url.split("://", 1)
    if protocol in ("file", "local"):
        if not rest.startswith("/"):
            raise ValueError(f"storage URL {url!r}: a file:// URL needs an absolute path")
        return "file", str(Path(rest).resolve())
    root = rest.strip("/")
    if not root:
        raise ValueError(f"storage URL {url!r} names no bucket or folder")
    return protocol, root


def _walk_files(local_dir: Path) -> Iterator[tuple[str, Path]]:
    """Regular files below ``local_dir`` as ``(relative posix path, path)``, sorted.

    Symbolic links are followed only when they point to a regular file inside
    ``local_dir``: a job could otherwise publish any file the server can read
    (``output/key -> /path/to/secret``). FIFOs, sockets and devices are skipped, since
    reading a FIFO would block staging forever.
    """
    root = local_dir.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()  # os.walk does not descend into symlinked dirs (followlinks=False)
        for name in sorted(filenames):
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(root) or not target.is_file():
                    log.warning("not staging %s: a link outside the output folder", rel)
                    continue
            elif not stat.S_ISREG(path.lstat().st_mode):
                log.warning("not staging %s: not a regular file", rel)
                continue
            yield rel, path


def _copy_local(source: Path, target: Path) -> int:
    """Copy to a temporary name, then rename: readers never see a half-written file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}{PART_SUFFIX}")
    try:
        shutil.copyfile(source, part)
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)
    return target.stat().st_size

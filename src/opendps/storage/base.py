"""The storage contract: where staged job outputs live.

A :class:`Storage` is rooted at a base URL (a local folder, ``file://…`` or
``s3://bucket/prefix``). Callers address files by *keys* relative to that base,
``<prefix>/<path>``; a key can never reach outside the base (see
:func:`normalize_key`), because the HTTP download route passes user-supplied
paths straight through.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from opendps.errors import InvalidInput, NotFound


class InvalidKey(InvalidInput, ValueError):
    """A storage key is absolute or leaves the storage base."""


class KeyNotFound(NotFound, FileNotFoundError):
    """No stored file has this key."""


@dataclass(frozen=True)
class StoredFile:
    """One file in storage, as listed under a prefix."""

    path: str  # relative to the prefix that was asked for, "/"-separated
    size: int  # bytes
    url: str  # full storage URL: file:///… or s3://bucket/…


@runtime_checkable
class Storage(Protocol):
    """Object storage for staged outputs. Every method takes keys relative to ``url``."""

    url: str  # base URL, without a trailing slash

    def put_dir(
        self, local_dir: Path, prefix: str, metadata: Mapping[str, str] | None = None
    ) -> list[StoredFile]:
        """Upload ``local_dir`` recursively under ``prefix``; the files written, by path.
        ``metadata`` is stored with each object where the storage keeps metadata (S3)."""
        ...

    def list(self, prefix: str) -> list[StoredFile]:
        """Every file below the folder ``prefix`` (recursive), sorted by path."""
        ...

    def open(self, key: str) -> BinaryIO:
        """A streaming binary reader; raises :class:`KeyNotFound` when absent."""
        ...

    def exists(self, key: str) -> bool:
        """Whether a file (not a folder) is stored at ``key``."""
        ...

    def url_for(self, key: str) -> str:
        """The full storage URL of ``key`` (file or folder)."""
        ...

    def delete_prefix(self, prefix: str) -> None:
        """Delete everything below the folder ``prefix``; absent is not an error."""
        ...


def normalize_key(key: str, *, allow_empty: bool = False) -> str:
    """Check a key and return it in canonical form (``a/b/c``).

    Empty and ``.`` segments are dropped and a trailing slash is ignored. Absolute keys,
    ``..`` segments and NUL raise :class:`InvalidKey`: they are the ways a crafted output
    path could reach files outside the storage base. Other characters are left alone,
    since any POSIX file name a job writes must stay stageable.
    """
    if not isinstance(key, str):
        raise InvalidKey(f"storage key must be a string, not {type(key).__name__}")
    if key.startswith("/"):
        raise InvalidKey(f"storage key {key!r} must be relative, not absolute")
    if "\0" in key:
        raise InvalidKey(f"storage key {key!r} contains a NUL character")
    parts = [part for part in key.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise InvalidKey(f"storage key {key!r} must not contain '..'")
    if not parts and not allow_empty:
        raise InvalidKey("storage key must not be empty")
    return "/".join(parts)


def join_key(*parts: str) -> str:
    """Join key fragments with ``/`` and normalize the result (empty result allowed)."""
    return normalize_key("/".join(p for p in parts if p), allow_empty=True)

"""The object-store protocol every backend implements, plus shared helpers.

Paths are relative POSIX paths under a store's root (``datasets/x/versions/ab12.json``); the
root is a URI (``file:///data/lake``, ``s3://bucket/lake``). Writes are atomic: a reader sees
a whole object or none (temp file + rename on disk, single PUT or completed multipart upload on
S3). Every backend counts its requests in ``stats``, which is how tests prove that fetching one
sample is one ranged read and how the loader reports object-store requests/s.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import BinaryIO, Protocol, runtime_checkable

__all__ = ["Store", "StoreStats", "ObjectNotFound", "StoreError", "clean_path"]


class StoreError(RuntimeError):
    """A storage operation failed after its retries; the message names the URI."""


class ObjectNotFound(StoreError, FileNotFoundError):
    """The object does not exist."""


class StoreStats:
    """Thread-safe request and byte counters, by operation (``get``, ``get_range``, ``put`` ...)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ops: Counter[str] = Counter()
        self.retries = 0
        self.bytes_read = 0
        self.bytes_written = 0

    def count(self, op: str, read: int = 0, written: int = 0) -> None:
        with self._lock:
            self.ops[op] += 1
            self.bytes_read += read
            self.bytes_written += written

    def add(self, read: int = 0, written: int = 0) -> None:
        with self._lock:
            self.bytes_read += read
            self.bytes_written += written

    def count_retry(self) -> None:
        with self._lock:
            self.retries += 1

    @property
    def requests(self) -> int:
        return sum(self.ops.values())

    def reset(self) -> None:
        with self._lock:
            self.ops.clear()
            self.retries = self.bytes_read = self.bytes_written = 0

    def as_dict(self) -> dict[str, object]:
        return {"requests": self.requests, "ops": dict(self.ops), "retries": self.retries,
                "bytes_read": self.bytes_read, "bytes_written": self.bytes_written}


def clean_path(path: str) -> str:
    """Normalise a store-relative path; refuse absolute paths and ``..`` escapes."""
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts:
        raise ValueError(f"store paths are relative and stay under the root: {path!r}")
    s = str(p)
    return "" if s == "." else s


@runtime_checkable
class Store(Protocol):
    """What mmlake needs from storage. ``LocalStore`` and ``S3Store`` implement it."""

    uri: str
    stats: StoreStats

    def url(self, path: str) -> str:
        """The absolute URI of ``path`` (``file://...`` or ``s3://...``)."""
        ...

    def open(self, path: str) -> BinaryIO:
        """A buffered, sequential reader over the object."""
        ...

    def read(self, path: str) -> bytes: ...

    def read_range(self, path: str, start: int, length: int) -> bytes:
        """``length`` bytes from offset ``start``: one request."""
        ...

    def put(self, path: str, data: bytes) -> None:
        """Write an object atomically."""
        ...

    def put_file(self, path: str, local_path: str) -> None:
        """Upload a local file atomically (multipart on S3 for large files)."""
        ...

    def list(self, prefix: str = "") -> Iterator[str]:
        """Relative paths of all objects under ``prefix``, sorted."""
        ...

    def exists(self, path: str) -> bool: ...

    def size(self, path: str) -> int: ...

    def delete(self, path: str) -> None: ...

    def copy(self, src: str, dst: str) -> None: ...

    def sub(self, prefix: str) -> Store:
        """A store rooted at ``prefix`` under this one (sharing connections and counters)."""
        ...

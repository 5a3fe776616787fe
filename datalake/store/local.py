"""Object store on a local (or network-mounted) file system.

Writes go to a hidden temp file in the target directory and are renamed into place, so a
reader (or a crash) never sees a half-written object. Temp files are skipped by ``list``.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from datalake.store.base import ObjectNotFound, StoreStats, clean_path

__all__ = ["LocalStore"]

_TMP = ".mmlake-tmp-"


class LocalStore:
    def __init__(self, root: str | os.PathLike[str], stats: StoreStats | None = None) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uri = self.root.as_uri()
        self.stats = stats or StoreStats()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _p(self, path: str) -> Path:
        rel = clean_path(path)
        return self.root / rel if rel else self.root

    def url(self, path: str) -> str:
        return self._p(path).as_uri()

    def sub(self, prefix: str) -> LocalStore:
        return LocalStore(self._p(prefix), stats=self.stats)

    def _missing(self, path: str) -> ObjectNotFound:
        return ObjectNotFound(f"no object at {self.url(path)}")

    def open(self, path: str) -> BinaryIO:
        self.stats.count("get")
        try:
            return open(self._p(path), "rb")  # noqa: SIM115 - the caller closes it
        except FileNotFoundError:
            raise self._missing(path) from None

    def read(self, path: str) -> bytes:
        try:
            data = self._p(path).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise self._missing(path) from None
        self.stats.count("get", read=len(data))
        return data

    def read_range(self, path: str, start: int, length: int) -> bytes:
        if start < 0 or length < 0:
            raise ValueError(f"bad range start={start} length={length}")
        try:
            with open(self._p(path), "rb") as f:
                f.seek(start)
                data = f.read(length)
        except FileNotFoundError:
            raise self._missing(path) from None
        self.stats.count("get_range", read=len(data))
        return data

    def _atomic(self, path: str) -> tuple[Path, Path]:
        dst = self._p(path)
        dst.parent.mkdir(parents=True, exist_ok=True)
        return dst, dst.with_name(f"{_TMP}{uuid.uuid4().hex}-{dst.name}")

    def put(self, path: str, data: bytes) -> None:
        dst, tmp = self._atomic(path)
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, dst)
        finally:
            tmp.unlink(missing_ok=True)
        self.stats.count("put", written=len(data))

    def put_file(self, path: str, local_path: str | os.PathLike[str]) -> None:
        dst, tmp = self._atomic(path)
        try:
            shutil.copyfile(local_path, tmp)
            os.replace(tmp, dst)
        finally:
            tmp.unlink(missing_ok=True)
        self.stats.count("put", written=dst.stat().st_size)

    def list(self, prefix: str = "") -> Iterator[str]:
        self.stats.count("list")
        base = self._p(prefix)
        if base.is_file():
            yield clean_path(prefix)
            return
        if not base.is_dir():
            return
        found = []
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if not name.startswith(_TMP):
                    found.append(Path(dirpath, name).relative_to(self.root).as_posix())
        yield from sorted(found)

    def exists(self, path: str) -> bool:
        self.stats.count("head")
        return self._p(path).is_file()

    def size(self, path: str) -> int:
        self.stats.count("head")
        try:
            return self._p(path).stat().st_size
        except FileNotFoundError:
            raise self._missing(path) from None

    def delete(self, path: str) -> None:
        self.stats.count("delete")
        self._p(path).unlink(missing_ok=True)

    def copy(self, src: str, dst: str) -> None:
        if not self._p(src).is_file():
            raise self._missing(src)
        self.put_file(dst, self._p(src))

"""Store roots: the only places a service (the registry, its jobs) may read or write.

Every user-supplied path or URI is resolved first -- local paths to their real path (``..`` and
symlinks followed), ``s3://`` keys normalised -- and then must lie inside one of the roots
(``/data/lake``, ``file:///data/incoming``, ``s3://bucket/prefix``); anything else is refused
with :class:`OutsideRoots`, whose message names the allowed roots.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Roots", "OutsideRoots"]


class OutsideRoots(ValueError):
    """A path or URI outside every configured root."""


def _parse(uri: str) -> tuple[str, str]:
    """(scheme, location): ``("file", real local path)`` or ``("s3", "bucket/normalised/key")``."""
    if uri.startswith("s3://"):
        rest = uri[5:]
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise OutsideRoots(f"{uri!r} names no bucket")
        parts = [p for p in key.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise OutsideRoots(f"{uri!r}: '..' is not allowed in an S3 key")
        return "s3", posixpath.join(bucket, *parts) if parts else bucket
    if uri.startswith("file://"):
        uri = uri[7:]
    elif "://" in uri:
        raise OutsideRoots(f"{uri!r}: only local paths, file:// and s3:// URIs can be inside a root")
    return "file", os.path.realpath(os.path.abspath(os.path.expanduser(uri)))


@dataclass(frozen=True)
class Roots:
    roots: tuple[str, ...]

    @classmethod
    def of(cls, roots: Iterable[str | None]) -> Roots:
        return cls(tuple(dict.fromkeys(r for r in roots if r)))

    def _parsed(self) -> list[tuple[str, str]]:
        return [_parse(r) for r in self.roots]

    def check(self, uri: str, what: str = "path") -> str:
        """``uri`` if it lies inside a root (after resolving it), else :class:`OutsideRoots`."""
        try:
            scheme, loc = _parse(uri)
        except OutsideRoots as exc:
            raise OutsideRoots(f"{what} {exc}; allowed roots: {list(self.roots)}") from None
        for rs, rl in self._parsed():
            if rs == scheme and (loc == rl or loc.startswith(rl.rstrip("/") + "/")):
                return uri
        raise OutsideRoots(f"{what} {uri!r} is outside the allowed roots {list(self.roots)} "
                           "(set MMLAKE_REGISTRY_ROOTS to add one)")

    def allows(self, uri: str) -> bool:
        try:
            self.check(uri)
        except OutsideRoots:
            return False
        return True

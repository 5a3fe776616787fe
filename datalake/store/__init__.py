"""Object stores: one small protocol, on local disk (``LocalStore``) and S3 (``S3Store``).

``open_store("file:///data/lake")``, ``open_store("./lake")`` or
``open_store("s3://bucket/lake", endpoint_url=...)``. The S3 endpoint, rate limit and
retries default to the ``MMLAKE_S3_*`` environment variables so that the same code runs on
AWS, MinIO or the loopback test server without change.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

from datalake.store.base import ObjectNotFound, Store, StoreError, StoreStats, clean_path
from datalake.store.local import LocalStore
from datalake.store.ratelimit import NodeTokenBucket, TokenBucket
from datalake.store.s3 import S3Options, S3Store

__all__ = ["Store", "StoreStats", "StoreError", "ObjectNotFound", "LocalStore", "S3Store", "S3Options",
           "TokenBucket", "NodeTokenBucket", "open_store", "split_uri", "clean_path", "s3_options_from_env"]


def s3_options_from_env(**overrides: object) -> S3Options:
    """``S3Options`` from ``MMLAKE_S3_ENDPOINT``, ``MMLAKE_S3_REGION``, ``MMLAKE_S3_RATE_LIMIT``
    (requests/s) and ``MMLAKE_S3_MAX_RETRIES``; keyword overrides win."""
    env = os.environ
    kw: dict[str, object] = {}
    if env.get("MMLAKE_S3_ENDPOINT"):
        kw["endpoint_url"] = env["MMLAKE_S3_ENDPOINT"]
    if env.get("MMLAKE_S3_REGION"):
        kw["region"] = env["MMLAKE_S3_REGION"]
    for var, name, conv in (("MMLAKE_S3_RATE_LIMIT", "rate_limit", float),
                            ("MMLAKE_S3_MAX_RETRIES", "max_retries", int)):
        if env.get(var):
            try:
                kw[name] = conv(env[var])
            except ValueError:
                raise ValueError(f"{var}={env[var]!r} is not a number") from None
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return S3Options(**kw)  # type: ignore[arg-type]


def open_store(uri: str | os.PathLike[str], *, options: S3Options | None = None) -> Store:
    """A store rooted at ``uri``: ``s3://bucket/prefix``, ``file:///abs/path`` or a plain path."""
    s = os.fspath(uri)
    parsed = urlparse(s)
    if parsed.scheme == "s3":
        return S3Store(parsed.netloc, parsed.path.lstrip("/"), options or s3_options_from_env())
    if parsed.scheme == "file":
        return LocalStore(unquote(parsed.path))
    if parsed.scheme in ("", ) or (len(parsed.scheme) == 1 and os.name == "nt"):
        return LocalStore(Path(s))
    raise ValueError(f"unsupported store URI {s!r}: use a path, file:///path or s3://bucket/prefix")


def split_uri(uri: str) -> tuple[str, str]:
    """``s3://b/a/b/c.json`` -> (``s3://b/a/b``, ``c.json``); the same for files and paths."""
    s = os.fspath(uri).rstrip("/")
    head, _, tail = s.rpartition("/")
    if not tail or not head or head.endswith(":/") or head.endswith(":"):
        raise ValueError(f"{uri!r} does not name an object")
    return head, tail

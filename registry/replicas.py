"""Copying a version to another store, verified object by object.

Each object (shard, index, rejects table) is streamed from the source through a local temp
file (hashing on the way) and uploaded atomically; then the destination copy is read back and
its sha256 compared with the manifest's. An object already at the destination with the right
size and hash is skipped, so an interrupted sync resumes where it stopped. The manifest is
copied last, byte for byte, and opened at the destination (which re-checks its digest): a
replica exists only when all of it does.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable

from datalake import DatasetVersion
from datalake.store import ObjectNotFound, Store, open_store

__all__ = ["copy_version", "hash_object", "transfer"]


def hash_object(store: Store, path: str) -> tuple[int, str] | None:
    """(size, sha256) of an object, or None when it does not exist."""
    h, n = hashlib.sha256(), 0
    try:
        with store.open(path) as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
                n += len(chunk)
    except ObjectNotFound:
        return None
    return n, h.hexdigest()


def transfer(src: Store, src_path: str, dst: Store, dst_path: str) -> tuple[int, str]:
    """Stream one object from ``src`` to ``dst`` (atomic at the destination); (size, sha256)."""
    fd, tmp = tempfile.mkstemp(prefix="mmlake-sync-")
    h, n = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as out, src.open(src_path) as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
                n += len(chunk)
                out.write(chunk)
        dst.put_file(dst_path, tmp)
    finally:
        os.unlink(tmp)
    return n, h.hexdigest()


def copy_version(version: DatasetVersion, target: str,
                 progress: Callable[[int, int], None] | None = None) -> tuple[str, int, int]:
    """Copy ``version`` into the lake at ``target``; returns (manifest URI there, bytes, objects copied)."""
    m = version.manifest
    dst = open_store(target).sub(f"datasets/{m.dataset}")
    objects: list[tuple[str, int | None, str | None]] = []
    for sh in m.shards:
        objects += [(sh.path, sh.bytes, sh.sha256), (sh.index, sh.index_bytes, sh.index_sha256)]
    if m.rejects:
        objects.append((m.rejects["path"], None, None))
    copied, total = 0, 0
    for i, (path, size, sha) in enumerate(objects):
        if size is None or sha is None:  # not checksummed in the manifest: compare with the source
            size, sha = hash_object(version.store, path) or (0, "")
        have = hash_object(dst, path)
        if have != (size, sha):
            got = transfer(version.store, path, dst, path)
            if got != (size, sha):
                raise ValueError(f"{m.ref}: source object {path} does not match the manifest "
                                 f"({got[0]} bytes, sha256 {got[1][:12]}…): verify the source version")
            if hash_object(dst, path) != (size, sha):
                raise OSError(f"{m.ref}: the copy of {path} at {dst.url(path)} does not verify; retry the sync")
            copied += 1
        total += size
        if progress:
            progress(i + 1, len(objects))
    manifest_path = f"versions/{m.version}.json"
    dst.put(manifest_path, version.store.read(manifest_path))
    copied += 1
    replica = DatasetVersion.open(dst.url(manifest_path), dst)  # re-checks the digest
    if replica.manifest.digest != m.digest:
        raise OSError(f"{m.ref}: the replica's manifest differs from the source's")
    if not dst.exists("refs/latest"):
        dst.put("refs/latest", m.version.encode())
    return replica.uri, total, copied

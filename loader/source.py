"""Sources: a dataset version resolved once, read by sample index through layered caches.

Storage path, per worker process:

- the manifest is read once (in the main process) and travels to the workers;
- shard indexes are cached in memory (one GET per shard per worker, ever);
- remote shards are read **whole** into a node-local disk cache (content-addressed by the
  shard's sha256, verified on download, shared by every worker of the node through a lock
  file, evicted least-recently-used above ``cache_bytes``): the epoch order reads a shard's
  samples together, so one GET serves a whole block of samples; without a disk cache, each
  sample is one ranged GET;
- local shards are read with ranged reads (the OS page cache is the cache);
- requests to the object store go through the store's token bucket (``requests_per_s`` for
  the node, split evenly over its workers) with retries and backoff on 503/429/5xx.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from datalake.shards import ShardIndex, ShardInfo
from datalake.store import LocalStore, Store, open_store, s3_options_from_env
from datalake.version import DatasetVersion, Manifest
from loader.order import epoch_order

__all__ = ["ShardCache", "Source", "resolve_manifest_uri"]


class ShardCache:
    """Whole shards on local disk, shared by the workers of a node, LRU-evicted above a limit."""

    def __init__(self, root: str | os.PathLike[str], limit_bytes: int) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.limit = int(limit_bytes)
        self.hits = self.misses = self.evictions = 0

    def _path(self, sha: str) -> Path:
        return self.root / f"{sha}.tar"

    def get(self, store: Store, info: ShardInfo, where: str) -> Path:
        path = self._path(info.sha256)
        if path.exists():
            self.hits += 1
            os.utime(path)
            return path
        with open(self.root / f"{info.sha256}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one worker downloads, the others wait and reuse it
            try:
                if path.exists():
                    self.hits += 1
                    os.utime(path)
                    return path
                self.misses += 1
                data = store.read(info.path)
                if hashlib.sha256(data).hexdigest() != info.sha256:
                    raise OSError(f"{where}: downloaded shard does not match its manifest sha256 "
                                  f"(corrupt object in the store?)")
                tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
                tmp.write_bytes(data)
                os.replace(tmp, path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        self._evict(keep=path)
        return path

    def _evict(self, keep: Path) -> None:
        files = [(p.stat().st_mtime, p.stat().st_size, p) for p in self.root.glob("*.tar")]
        total = sum(f[1] for f in files)
        for _, size, p in sorted(files):
            if total <= self.limit:
                break
            if p == keep:
                continue
            try:
                p.unlink()
                total -= size
                self.evictions += 1
            except FileNotFoundError:
                pass


def resolve_manifest_uri(ref: str, registry: str | None = None) -> str:
    """A manifest URI for ``ref``: a ``file://``/``s3://`` URI or path as is, else a registry
    reference resolved for reading (deprecated warns, archived/deleted raise)."""
    if ref.startswith(("file://", "s3://")) or ref.endswith(".json"):
        if not ref.startswith(("file://", "s3://")):
            ref = Path(ref).resolve().as_uri()
        return ref
    from registry.client import connect  # the loader needs the registry only for references

    return connect(registry).resolve(ref, for_read=True).manifest_uri


@dataclass
class _Located:
    key: str
    members: dict[str, bytes]
    where: str


class Source:
    """One dataset version as a loader source (picklable: stores reopen in each worker)."""

    def __init__(self, index: int, uri: str, manifest: Manifest, *, max_synthetic: float | None = None) -> None:
        self.index, self.uri, self.manifest = index, uri, manifest
        self.ref = manifest.ref
        self.digest = manifest.digest
        self.sizes = [s.samples for s in manifest.shards]
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self.n = int(self.starts[-1])
        if self.n == 0:
            raise ValueError(f"source {self.ref} has no samples")
        self.max_synthetic = max_synthetic
        syn = int(manifest.stats.get("synthetic", 0))
        frac = syn / self.n
        self.synthetic_frac = frac
        # keep a synthetic sample with probability q so that the kept share is max_synthetic
        self.keep_synthetic = 1.0
        if max_synthetic is not None and frac > max_synthetic:
            self.keep_synthetic = max_synthetic * (1 - frac) / (frac * (1 - max_synthetic)) if frac < 1 else 0.0
        self._store: Store | None = None
        self._pid = -1
        self._indexes: dict[int, ShardIndex] = {}
        self.cache: ShardCache | None = None
        self.rate: float | None = None
        self.mem_limit = 0
        self._mem: OrderedDict[int, bytes] = OrderedDict()  # whole shards held in memory, LRU
        self.mem_hits = self.mem_misses = 0

    @classmethod
    def open(cls, index: int, ref: str, *, registry: str | None = None, max_synthetic: float | None = None) -> Source:
        uri = resolve_manifest_uri(ref, registry)
        v = DatasetVersion.open(uri)
        return cls(index, uri, v.manifest, max_synthetic=max_synthetic)

    def __getstate__(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["_store"], d["_pid"], d["_indexes"], d["_mem"] = None, -1, {}, OrderedDict()
        return d

    def configure(self, cache: ShardCache | None, rate: float | None, mem_cache_bytes: int = 0) -> None:
        self.cache, self.rate, self.mem_limit = cache, rate, int(mem_cache_bytes)
        self._store = None

    @property
    def store(self) -> Store:
        if self._store is None or self._pid != os.getpid():
            base = self.uri.rpartition("/versions/")[0]
            opts = s3_options_from_env(rate_limit=self.rate) if base.startswith("s3://") else None
            self._store, self._pid, self._indexes = open_store(base, options=opts), os.getpid(), {}
        return self._store

    @property
    def remote(self) -> bool:
        return not isinstance(self.store, LocalStore)

    def draw(self, seed: int, k: int) -> tuple[int, int]:
        """Draw ``k`` of this source -> (epoch, global sample index)."""
        epoch, pos = divmod(int(k), self.n)
        return epoch, int(epoch_order(seed, epoch, self.digest, self.sizes)[pos])

    def locate(self, i: int) -> tuple[int, int]:
        j = int(np.searchsorted(self.starts, i, side="right")) - 1
        return j, i - int(self.starts[j])

    def where(self, j: int) -> str:
        return f"{self.ref} shard {self.manifest.shards[j].path}"

    def _index(self, j: int) -> ShardIndex:
        if j not in self._indexes:
            info = self.manifest.shards[j]
            self._indexes[j] = ShardIndex.from_bytes(self.store.read(info.index), self.where(j))
        return self._indexes[j]

    def read(self, i: int) -> _Located:
        """Sample ``i`` as raw members (one ranged read, or a slice of the cached shard)."""
        j, pos = self.locate(i)
        store = self.store
        entry = self._index(j).entries[pos]
        info = self.manifest.shards[j]
        where = self.where(j)
        if self.cache is not None and self.remote:
            with open(self.cache.get(store, info, where), "rb") as f:
                f.seek(entry.offset)
                blob = f.read(entry.length)
        elif self.remote and 0 < info.bytes <= self.mem_limit // 2:
            blob = self._mem_shard(j, info)[entry.offset: entry.offset + entry.length]
        else:
            blob = store.read_range(info.path, entry.offset, entry.length)
        if len(blob) != entry.length:
            raise OSError(f"{where}: sample {entry.key!r} short read ({len(blob)} of {entry.length} bytes)")
        return _Located(entry.key, {k: blob[o: o + n] for k, (o, n) in entry.members.items()}, where)

    def _mem_shard(self, j: int, info: ShardInfo) -> bytes:
        """Shard ``j`` whole, from the in-memory LRU (no disk cache: one GET per shard, not per sample)."""
        if j in self._mem:
            self.mem_hits += 1
            self._mem.move_to_end(j)
            return self._mem[j]
        self.mem_misses += 1
        data = self.store.read(info.path)
        self._mem[j] = data
        while sum(len(b) for b in self._mem.values()) > self.mem_limit and len(self._mem) > 1:
            self._mem.popitem(last=False)
        return data

    def keeps_synthetic(self, seed: int, key: str) -> bool:
        if self.keep_synthetic >= 1.0:
            return True
        h = hashlib.sha256(repr(("synthetic", seed, self.ref, key)).encode()).digest()
        return int.from_bytes(h[:8], "little") / 2**64 < self.keep_synthetic

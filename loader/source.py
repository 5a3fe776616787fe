"""Sources: a dataset version resolved once, read by sample index through layered caches.

Storage path, per worker process:

- the manifest is read once (in the main process) and travels to the workers;
- shard indexes are compact (``datalake.shards.COMPACT_DTYPE``: 16 bytes a sample -- offset,
  length, packing hint), derived from the JSON index once per node, kept on the node's disk
  (content-addressed by the index's sha256) and memory-mapped by every worker: the OS shares
  one copy per node, and no per-sample Python objects exist (keys and member offsets are read
  from the tar headers inside the sample's byte range);
- remote shards are read **whole** into a node-local disk cache (content-addressed by the
  shard's sha256, verified on download, shared by every worker of the node through a lock
  file, evicted least-recently-used above ``cache_bytes``): the epoch order reads a shard's
  samples together, so one GET serves a whole block of samples; without a disk cache, each
  sample is one ranged GET;
- local shards are read with ranged reads (the OS page cache is the cache);
- requests to the object store go through one token bucket for the whole node
  (``requests_per_s``; a locked file in the node's cache directory shared by every rank and
  worker of the node) with retries and backoff on 503/429/5xx.
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

from datalake.shards import COMPACT_DTYPE, ShardIndex, ShardInfo, compact_index, split_members
from datalake.store import LocalStore, Store, open_store, s3_options_from_env
from datalake.version import DatasetVersion, Manifest
from loader.order import SourceOrder

__all__ = ["ShardCache", "IndexCache", "Source", "resolve_manifest_uri"]


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


class IndexCache:
    """Compact shard indexes on the node's disk, memory-mapped (``root=None``: in memory only)."""

    def __init__(self, root: str | os.PathLike[str] | None) -> None:
        self.root = Path(root) if root is not None else None
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)
        self.derived = 0

    def get(self, store: Store, info: ShardInfo, where: str) -> np.ndarray:
        if self.root is None:
            self.derived += 1
            return compact_index(ShardIndex.from_bytes(store.read(info.index), where))
        path = self.root / f"{info.index_sha256.removeprefix('sha256:')}.npy"
        if not path.exists():
            self.derived += 1
            arr = compact_index(ShardIndex.from_bytes(store.read(info.index), where))
            tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
            with open(tmp, "wb") as f:
                np.save(f, arr)
            os.replace(tmp, path)  # several workers may derive it at once: same bytes, last wins
        arr = np.load(path, mmap_mode="r")
        if arr.dtype != COMPACT_DTYPE or len(arr) != info.samples:
            raise OSError(f"{where}: cached index {path} does not match the manifest (delete it to rebuild)")
        return arr


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
        self._indexes: dict[int, np.ndarray] = {}
        self.cache: ShardCache | None = None
        self.index_cache = IndexCache(None)
        self.rate: float | None = None
        self.rate_file: str | None = None
        self.mem_limit = 0
        self._mem: OrderedDict[int, bytes] = OrderedDict()  # whole shards held in memory, LRU
        self.mem_hits = self.mem_misses = 0
        self._order: SourceOrder | None = None

    @classmethod
    def open(cls, index: int, ref: str, *, registry: str | None = None, max_synthetic: float | None = None) -> Source:
        uri = resolve_manifest_uri(ref, registry)
        v = DatasetVersion.open(uri)
        return cls(index, uri, v.manifest, max_synthetic=max_synthetic)

    def __getstate__(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["_store"], d["_pid"], d["_indexes"], d["_mem"], d["_order"] = None, -1, {}, OrderedDict(), None
        return d

    def configure(self, cache: ShardCache | None, rate: float | None, mem_cache_bytes: int = 0,
                  index_cache: IndexCache | None = None, rate_file: str | None = None) -> None:
        self.cache, self.rate, self.mem_limit, self.rate_file = cache, rate, int(mem_cache_bytes), rate_file
        self.index_cache = index_cache or IndexCache(None)
        self._store = None

    @property
    def store(self) -> Store:
        if self._store is None or self._pid != os.getpid():
            base = self.uri.rpartition("/versions/")[0]
            opts = (s3_options_from_env(rate_limit=self.rate, rate_file=self.rate_file if self.rate else None)
                    if base.startswith("s3://") else None)
            self._store, self._pid, self._indexes = open_store(base, options=opts), os.getpid(), {}
        return self._store

    @property
    def remote(self) -> bool:
        return not isinstance(self.store, LocalStore)

    def draw(self, seed: int, k: int) -> tuple[int, int]:
        """Draw ``k`` of this source -> (epoch, global sample index)."""
        if self._order is None or self._order.seed != seed:
            self._order = SourceOrder(seed, self.digest, self.sizes)
        return self._order.draw(k)

    def locate(self, i: int) -> tuple[int, int]:
        j = int(np.searchsorted(self.starts, i, side="right")) - 1
        return j, i - int(self.starts[j])

    def where(self, j: int) -> str:
        return f"{self.ref} shard {self.manifest.shards[j].path}"

    def _index(self, j: int) -> np.ndarray:
        if j not in self._indexes:
            self._indexes[j] = self.index_cache.get(self.store, self.manifest.shards[j], self.where(j))
        return self._indexes[j]

    def read(self, i: int) -> _Located:
        """Sample ``i`` as raw members (one ranged read, or a slice of the cached shard)."""
        j, pos = self.locate(i)
        store = self.store
        row = self._index(j)[pos]
        offset, length = int(row["offset"]), int(row["length"])
        info = self.manifest.shards[j]
        where = self.where(j)
        if self.cache is not None and self.remote:
            with open(self.cache.get(store, info, where), "rb") as f:
                f.seek(offset)
                blob = f.read(length)
        elif self.remote and 0 < info.bytes <= self.mem_limit // 2:
            blob = self._mem_shard(j, info)[offset: offset + length]
        else:
            blob = store.read_range(info.path, offset, length)
        if len(blob) != length:
            raise OSError(f"{where}: sample #{pos} short read ({len(blob)} of {length} bytes)")
        key, members = split_members(blob, f"{where} sample #{pos}")
        return _Located(key, members, where)

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

"""Shards: WebDataset-compatible tar files with a byte-offset index beside them.

A shard holds samples in order. Each sample is a run of tar members sharing its key:
``<key>.json`` (the record) first, then its media in original bytes (``<key>.0.jpg`` ...).
Tar headers are normalised (mtime 0, uid/gid 0, mode 0644), so the same samples always give
the same bytes and the same sha256: re-running a job reproduces its version digest.

The sidecar index (``shard-000000.idx.json``) lists, for every sample, the byte range that
covers all its members and where each member's data sits inside that range. Fetching sample
*i* is then one ranged read, whatever the shard's size; the index also carries a little
metadata (kind, text length, media sizes) so that a loader can plan packing without reading
a single image.

``tar -tf`` lists a shard, and ``webdataset.WebDataset`` reads it unchanged.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from datalake.sample import Sample, SampleError
from datalake.store import Store

__all__ = ["ShardWriter", "ShardReader", "ShardInfo", "IndexEntry", "ShardIndex", "INDEX_SUFFIX",
           "ShardError", "decode_members", "COMPACT_DTYPE", "compact_index", "split_members"]

INDEX_SUFFIX = ".idx.json"
_BLOCK = 512


class ShardError(ValueError):
    """A shard that cannot be read as written; the message names the shard and key."""


@dataclass(frozen=True)
class ShardInfo:
    """One shard as listed in a manifest; paths are relative to the dataset directory."""

    path: str
    index: str
    samples: int
    bytes: int
    sha256: str
    index_bytes: int
    index_sha256: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ShardInfo:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})  # type: ignore[attr-defined]


@dataclass(frozen=True)
class IndexEntry:
    """Sample ``key`` occupies ``[offset, offset + length)`` of the tar; ``members`` maps a
    member suffix (``json``, ``0.jpg``) to ``(data offset relative to offset, size)``."""

    key: str
    offset: int
    length: int
    members: dict[str, tuple[int, int]]
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> list[Any]:
        return [self.key, self.offset, self.length, {k: list(v) for k, v in self.members.items()}, self.info]

    @classmethod
    def from_json(cls, row: list[Any]) -> IndexEntry:
        key, offset, length, members, info = row
        return cls(key, offset, length, {k: (v[0], v[1]) for k, v in members.items()}, info)


@dataclass(frozen=True)
class ShardIndex:
    shard: str
    entries: tuple[IndexEntry, ...]

    def to_bytes(self) -> bytes:
        doc = {"format": "mmlake-shard-index", "version": 1, "shard": self.shard,
               "samples": [e.to_json() for e in self.entries]}
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> ShardIndex:
        try:
            doc = json.loads(data)
            if doc.get("format") != "mmlake-shard-index":
                raise ValueError("not an mmlake shard index")
            return cls(doc["shard"], tuple(IndexEntry.from_json(r) for r in doc["samples"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ShardError(f"{where}: unreadable shard index ({exc})") from None

    def position(self, key: str) -> int:
        for i, e in enumerate(self.entries):
            if e.key == key:
                return i
        raise KeyError(key)


#: 16 bytes a sample: where its members lie in the tar, and a packing hint (estimated tokens:
#: text characters / 4 + merged 28x28 patches of its images)
COMPACT_DTYPE = np.dtype([("offset", "<u8"), ("length", "<u4"), ("hint", "<u4")])


def compact_index(index: ShardIndex) -> np.ndarray:
    """The index as one numpy array of ``COMPACT_DTYPE`` (keys and member offsets are in the
    tar headers inside each sample's byte range: ``split_members`` reads them back)."""
    arr = np.zeros(len(index.entries), dtype=COMPACT_DTYPE)
    for i, e in enumerate(index.entries):
        info = e.info or {}
        hint = int(info.get("text_chars", 0)) // 4 + sum(int(w) * int(h) // 784 for w, h in info.get("media", []))
        arr[i] = (e.offset, e.length, min(hint, 2**32 - 1))
    return arr


def split_members(blob: bytes, where: str) -> tuple[str, dict[str, bytes]]:
    """A sample's byte range (its tar members, headers included) -> (key, members by suffix)."""
    try:
        tf = tarfile.open(fileobj=io.BytesIO(blob), mode="r:")  # noqa: SIM115
        names = [(ti.name, ti.offset_data, ti.size) for ti in tf]
    except (tarfile.TarError, EOFError) as exc:
        raise ShardError(f"{where}: unreadable sample bytes ({exc})") from None
    record = [n for n, _, _ in names if n.endswith(".json")]
    if not record:
        raise ShardError(f"{where}: sample has no .json record (members: {[n for n, _, _ in names]})")
    key = record[0][: -len(".json")]
    members = {n[len(key) + 1:]: blob[o: o + size] for n, o, size in names if n.startswith(key + ".")}
    return key, members


def _sample_info(s: Sample, record_len: int) -> dict[str, Any]:
    return {"kind": s.kind, "text_chars": len(s.text()), "record_bytes": record_len,
            "media": [[m.width, m.height] for m in s.media]}


class ShardWriter:
    """Writes one shard to a local temp file, then uploads tar and index to ``store``.

    ``close()`` returns the ``ShardInfo``; nothing is uploaded before it, and the index is
    uploaded after the tar, so an index always describes a complete tar.
    """

    def __init__(self, store: Store, path: str, tmpdir: str | None = None) -> None:
        self.store, self.path = store, path
        self.index_path = path[: -len(".tar")] + INDEX_SUFFIX if path.endswith(".tar") else path + INDEX_SUFFIX
        fd, self._tmp = tempfile.mkstemp(prefix="mmlake-shard-", suffix=".tar", dir=tmpdir)
        self._file = os.fdopen(fd, "w+b")
        self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        self._entries: list[IndexEntry] = []
        self._keys: set[str] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._tar.offset

    def _member(self, name: str, data: bytes) -> tuple[int, int]:
        ti = tarfile.TarInfo(name)
        ti.size, ti.mtime, ti.mode, ti.uid, ti.gid, ti.uname, ti.gname = len(data), 0, 0o644, 0, 0, "", ""
        start = self._tar.offset
        self._tar.addfile(ti, io.BytesIO(data))
        padded = -(-len(data) // _BLOCK) * _BLOCK
        header = self._tar.offset - start - padded
        return start + header, len(data)

    def add(self, sample: Sample) -> None:
        if self._closed:
            raise RuntimeError(f"shard {self.path} is closed")
        if sample.key in self._keys:
            raise SampleError(sample.key, "key", f"appears twice in shard {self.path}")
        missing = [m.name for m in sample.media if m.name not in sample.blobs]
        if missing:
            raise SampleError(sample.key, "media", f"no bytes for {missing}: a shard stores every media item")
        record = sample.to_json_bytes()
        start = self._tar.offset
        members = {"json": self._member(f"{sample.key}.json", record)}
        for m in sample.media:
            members[m.name] = self._member(f"{sample.key}.{m.name}", bytes(sample.blobs[m.name]))
        rel = {k: (off - start, size) for k, (off, size) in members.items()}
        self._entries.append(IndexEntry(sample.key, start, self._tar.offset - start, rel,
                                        _sample_info(sample, len(record))))
        self._keys.add(sample.key)

    def close(self) -> ShardInfo:
        """Finish the tar, upload tar then index, and describe the shard."""
        if self._closed:
            raise RuntimeError(f"shard {self.path} already closed")
        self._closed = True
        try:
            self._tar.close()  # writes the two zero end blocks (and pads to a record)
            self._file.flush()
            self._file.seek(0)
            h = hashlib.sha256()
            for chunk in iter(lambda: self._file.read(1 << 20), b""):
                h.update(chunk)
            size = self._file.tell()
            self._file.close()
            index = ShardIndex(os.path.basename(self.path), tuple(self._entries)).to_bytes()
            self.store.put_file(self.path, self._tmp)
            self.store.put(self.index_path, index)
            return ShardInfo(self.path, self.index_path, len(self._entries), size, h.hexdigest(),
                             len(index), hashlib.sha256(index).hexdigest())
        finally:
            os.unlink(self._tmp)

    def abort(self) -> None:
        """Drop the shard without uploading anything."""
        if not self._closed:
            self._closed = True
            self._file.close()
            os.unlink(self._tmp)


def decode_members(members: dict[str, bytes], key: str, where: str) -> Sample:
    """Build a Sample from its tar members (``json`` + media suffixes)."""
    if "json" not in members:
        raise ShardError(f"{where}: sample {key!r} has no {key}.json record (members: {sorted(members)})")
    blobs = {k: v for k, v in members.items() if k != "json"}
    try:
        sample = Sample.from_json(members["json"], blobs=blobs, key_hint=key)
    except SampleError as exc:
        raise ShardError(f"{where}: {exc}") from None
    if sample.key != key:
        raise ShardError(f"{where}: member key {key!r} holds a record with key {sample.key!r}")
    return sample


class ShardReader:
    """Reads one shard: in order (streaming), or sample *i* with one ranged read."""

    def __init__(self, store: Store, info: ShardInfo, where: str | None = None) -> None:
        self.store, self.info = store, info
        self.where = where or store.url(info.path)
        self._index: ShardIndex | None = None

    @property
    def index(self) -> ShardIndex:
        if self._index is None:
            self._index = ShardIndex.from_bytes(self.store.read(self.info.index), self.where)
        return self._index

    def __len__(self) -> int:
        return self.info.samples

    def read_members(self, i: int) -> tuple[str, dict[str, bytes]]:
        """The raw members of sample ``i``: one ranged read (after the index is loaded)."""
        e = self.index.entries[i]
        blob = self.store.read_range(self.info.path, e.offset, e.length)
        if len(blob) != e.length:
            raise ShardError(f"{self.where}: sample {e.key!r} short read ({len(blob)} of {e.length} bytes)")
        return e.key, {k: blob[off: off + size] for k, (off, size) in e.members.items()}

    def read_sample(self, i: int) -> Sample:
        key, members = self.read_members(i)
        return decode_members(members, key, self.where)

    def iter_members(self) -> Iterator[tuple[str, dict[str, bytes]]]:
        """Stream the shard from the start, yielding ``(key, members)`` in order.

        The index says where every sample is, so each is one ``read`` of a buffered
        sequential stream, sliced into members -- no tar header parsing (about 5x faster
        than ``tarfile`` on page-cached data)."""
        with self.store.open(self.info.path) as f:
            pos = 0
            for e in self.index.entries:
                if e.offset != pos:
                    f.seek(e.offset)
                blob = f.read(e.length)
                if len(blob) != e.length:
                    raise ShardError(f"{self.where}: sample {e.key!r} is cut short (shard truncated?)")
                pos = e.offset + e.length
                yield e.key, {k: blob[off: off + size] for k, (off, size) in e.members.items()}

    def iter_tar(self) -> Iterator[tuple[str, dict[str, bytes]]]:
        """Like ``iter_members`` but parsing tar headers (no index needed)."""
        with self.store.open(self.info.path) as f:
            tar = tarfile.open(fileobj=f, mode="r|")  # noqa: SIM115 - closed with f
            key: str | None = None
            members: dict[str, bytes] = {}
            for ti in tar:
                if not ti.isfile():
                    continue
                k, _, suffix = ti.name.rpartition("/")[2].partition(".")
                fobj = tar.extractfile(ti)
                data = fobj.read() if fobj else b""
                if k != key:
                    if key is not None:
                        yield key, members
                    key, members = k, {}
                members[suffix] = data
            if key is not None:
                yield key, members

    def __iter__(self) -> Iterator[Sample]:
        for key, members in self.iter_members():
            yield decode_members(members, key, self.where)

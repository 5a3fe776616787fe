"""Dataset versions: immutable manifests over shards, committed atomically.

Layout of a lake (local directory or S3 prefix)::

    datasets/<name>/shards/<write_id>/shard-000000.tar      # staged, then referenced
    datasets/<name>/shards/<write_id>/shard-000000.idx.json
    datasets/<name>/shards/<write_id>/rejects.parquet        # inputs that did not make it
    datasets/<name>/versions/<version>.json                  # the manifest: written LAST
    datasets/<name>/refs/latest                              # the newest version id

A writer stages shards under a fresh ``write_id``; only ``commit()`` writes the manifest, as
one atomic PUT, after every shard and index is in place. A version therefore exists exactly
when its manifest does: a crash before the commit leaves unreferenced shards (removed by
``Lake.gc``) and no version. The version id is the first 12 hex digits of the sha256 of the
manifest's content -- shard checksums, counts, statistics, schema -- excluding where and when it
was written, so re-running a deterministic job reproduces the same id.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from datalake.sample import SCHEMA_VERSION, Sample
from datalake.shards import ShardError, ShardInfo, ShardReader, ShardWriter
from datalake.stats import VersionStats
from datalake.store import ObjectNotFound, Store, open_store

__all__ = ["Manifest", "VersionWriter", "DatasetVersion", "Lake", "VersionError", "validate_name",
           "parse_ref", "MANIFEST_FORMAT"]

MANIFEST_FORMAT = "mmlake-manifest"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
VERSION_RE = re.compile(r"^[0-9a-f]{4,64}$")
_MiB = 1 << 20


class VersionError(ValueError):
    """A dataset or version that does not exist or does not verify; says what to do."""


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise VersionError(f"invalid dataset name {name!r}: use 1-100 letters, digits, '.', '_' or '-', "
                           "starting with a letter or digit")
    return name


def parse_ref(ref: str) -> tuple[str, str]:
    """``name`` / ``name@latest`` / ``name@<version>`` -> (name, version or 'latest')."""
    name, _, version = ref.partition("@")
    validate_name(name)
    version = version or "latest"
    if version != "latest" and not VERSION_RE.match(version):
        raise VersionError(f"invalid version {version!r} in {ref!r}: use 'latest' or a version id (hex)")
    return name, version


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Manifest:
    dataset: str
    version: str
    digest: str
    schema_version: int
    shards: tuple[ShardInfo, ...]
    stats: dict[str, Any]
    rejects: dict[str, Any] | None = None
    created: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, str] = field(default_factory=dict)  # sidecar tables (scores, signatures): name -> path

    @property
    def samples(self) -> int:
        return sum(s.samples for s in self.shards)

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.shards)

    @property
    def ref(self) -> str:
        return f"{self.dataset}@{self.version}"

    @staticmethod
    def content_digest(dataset: str, schema_version: int, shards: Sequence[ShardInfo], stats: dict[str, Any],
                       rejects: dict[str, Any] | None) -> str:
        content = {
            "dataset": dataset, "schema_version": schema_version,
            "shards": [[s.samples, s.bytes, s.sha256, s.index_sha256] for s in shards],
            "stats": stats,
            "rejects": None if rejects is None else {"count": rejects["count"], "reasons": rejects["reasons"]},
        }
        blob = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
        return "sha256:" + hashlib.sha256(blob).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT, "format_version": 1,
            "dataset": self.dataset, "version": self.version, "digest": self.digest,
            "schema_version": self.schema_version, "samples": self.samples, "bytes": self.bytes,
            "shards": [s.to_json() for s in self.shards], "stats": self.stats,
            "rejects": self.rejects, "created": self.created, "extras": self.extras,
        }

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), indent=1, ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> Manifest:
        try:
            d = json.loads(data)
            if d.get("format") != MANIFEST_FORMAT:
                raise ValueError(f"format is {d.get('format')!r}, not {MANIFEST_FORMAT!r}")
            m = cls(dataset=d["dataset"], version=d["version"], digest=d["digest"],
                    schema_version=d["schema_version"],
                    shards=tuple(ShardInfo.from_json(s) for s in d["shards"]), stats=d["stats"],
                    rejects=d.get("rejects"), created=d.get("created", {}), extras=d.get("extras", {}))
        except (ValueError, KeyError, TypeError) as exc:
            raise VersionError(f"{where} is not a valid mmlake manifest: {exc}") from None
        expect = cls.content_digest(m.dataset, m.schema_version, m.shards, m.stats, m.rejects)
        if expect != m.digest or not m.digest.startswith(f"sha256:{m.version}"):
            raise VersionError(f"{where}: manifest digest does not match its content (edited by hand?)")
        if m.schema_version > SCHEMA_VERSION:
            raise VersionError(f"{where} uses sample schema v{m.schema_version}; this mmlake reads up to "
                               f"v{SCHEMA_VERSION}: upgrade mmlake")
        return m


class VersionWriter:
    """Stage samples into shards, then ``commit()`` a new version (or ``abort()``).

    Use as a context manager: leaving the block by an exception aborts, and nothing becomes
    visible. Shards roll over at ``shard_samples`` samples or ``shard_bytes`` bytes.
    """

    def __init__(self, lake: Lake, dataset: str, *, shard_samples: int = 1000, shard_bytes: int = 256 * _MiB,
                 write_id: str | None = None, created: dict[str, Any] | None = None,
                 tmpdir: str | None = None) -> None:
        if shard_samples < 1 or shard_bytes < 1:
            raise ValueError("shard_samples and shard_bytes must be >= 1")
        self.lake, self.dataset = lake, validate_name(dataset)
        self.write_id = write_id or uuid.uuid4().hex
        self.prefix = f"shards/{self.write_id}"
        self.store = lake.dataset_store(dataset)
        self.shard_samples, self.shard_bytes, self.tmpdir = shard_samples, shard_bytes, tmpdir
        self.created = dict(created or {})
        self.stats = VersionStats()
        self.shards: list[ShardInfo] = []
        self.rejects: dict[str, Any] | None = None
        self._current: ShardWriter | None = None
        self._keys: set[str] = set()
        self._done = False

    def __enter__(self) -> VersionWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._done:
            self.abort()
            raise RuntimeError("VersionWriter left without commit(): nothing was published")

    def add(self, sample: Sample) -> None:
        if self._done:
            raise RuntimeError("this version is already committed or aborted")
        if sample.key in self._keys:
            raise VersionError(f"{self.dataset}: sample key {sample.key!r} is already in this version")
        if self._current is None:
            self._current = ShardWriter(self.store, f"{self.prefix}/shard-{len(self.shards):06d}.tar", self.tmpdir)
        self._current.add(sample)
        self._keys.add(sample.key)
        self.stats.add(sample)
        if len(self._current) >= self.shard_samples or self._current.nbytes >= self.shard_bytes:
            self._flush()

    def _flush(self) -> None:
        if self._current is not None:
            self.shards.append(self._current.close())
            self._current = None

    def set_rejects(self, table: bytes, reasons: dict[str, int], filename: str = "rejects.parquet") -> None:
        """Store the rejects table beside the shards; listed in the manifest."""
        path = f"{self.prefix}/{filename}"
        self.store.put(path, table)
        self.rejects = {"path": path, "count": sum(reasons.values()), "reasons": dict(sorted(reasons.items()))}

    def commit(self) -> DatasetVersion:
        """Upload the last shard, then write the manifest (last), then move ``refs/latest``."""
        if self._done:
            raise RuntimeError("this version is already committed or aborted")
        self._flush()
        version, existed = commit_shards(self.store, self.dataset, self.shards, self.stats, rejects=self.rejects,
                                         created={"write_id": self.write_id, **self.created})
        if existed:
            self.abort()  # identical content was already a version: drop what we staged
        self._done = True
        return version

    def abort(self) -> None:
        """Drop staged shards (best effort) and publish nothing."""
        if self._done:
            return
        self._done = True
        if self._current is not None:
            self._current.abort()
        for path in list(self.store.list(self.prefix)):
            self.store.delete(path)


def commit_shards(store: Store, dataset: str, shards: Sequence[ShardInfo], stats: VersionStats, *,
                  rejects: dict[str, Any] | None = None, created: dict[str, Any] | None = None,
                  extras: dict[str, str] | None = None) -> tuple[DatasetVersion, bool]:
    """Write the manifest over already-uploaded shards (the last write of a version).

    ``store`` is the dataset directory. Returns (version, existed): when a version with the
    same content id exists, it is returned untouched -- versions are immutable."""
    st = stats.to_json()
    digest = Manifest.content_digest(dataset, SCHEMA_VERSION, shards, st, rejects)
    version = digest.split(":")[1][:12]
    path = f"versions/{version}.json"
    if store.exists(path):  # an old version again: ``refs/latest`` does not move back to it
        return DatasetVersion.open(store.url(path), store), True
    manifest = Manifest(dataset, version, digest, SCHEMA_VERSION, tuple(shards), st, rejects,
                        {"at": _now(), **(created or {})}, dict(extras or {}))
    store.put(path, manifest.to_bytes())
    store.put("refs/latest", version.encode())
    return DatasetVersion(store, manifest, store.url(path)), False


class DatasetVersion:
    """A committed version: its manifest, and readers over its shards."""

    def __init__(self, store: Store, manifest: Manifest, uri: str) -> None:
        self.store, self.manifest, self.uri = store, manifest, uri
        self._readers: dict[int, ShardReader] = {}
        starts, total = [], 0
        for s in manifest.shards:
            starts.append(total)
            total += s.samples
        self._starts = starts

    def __repr__(self) -> str:
        return f"DatasetVersion({self.ref!r}, samples={len(self)}, uri={self.uri!r})"

    @property
    def ref(self) -> str:
        return self.manifest.ref

    def __len__(self) -> int:
        return self.manifest.samples

    @classmethod
    def open(cls, uri: str, store: Store | None = None) -> DatasetVersion:
        """Open a manifest by URI (``file://.../datasets/x/versions/<id>.json`` or ``s3://...``).

        ``store``, when given, is the store of the dataset directory (it carries the S3
        endpoint, rate limit and counters); otherwise one is opened from the URI and the
        ``MMLAKE_S3_*`` environment."""
        base, sep, name = uri.rpartition("/versions/")
        if not sep or "/" in name or not name.endswith(".json"):
            raise VersionError(f"{uri!r} is not a manifest URI (expected .../datasets/<name>/versions/<id>.json)")
        store = store or open_store(base)
        try:
            data = store.read(f"versions/{name}")
        except ObjectNotFound:
            raise VersionError(f"no manifest at {uri}: the version does not exist (or was never committed)") from None
        return cls(store, Manifest.from_bytes(data, uri), uri)

    def shard(self, j: int) -> ShardReader:
        if j not in self._readers:
            info = self.manifest.shards[j]
            self._readers[j] = ShardReader(self.store, info, f"{self.ref} shard {info.path}")
        return self._readers[j]

    def locate(self, i: int) -> tuple[int, int]:
        """Global sample position -> (shard number, position in shard)."""
        if not 0 <= i < len(self):
            raise IndexError(f"{self.ref} has {len(self)} samples; no sample {i}")
        import bisect

        j = bisect.bisect_right(self._starts, i) - 1
        while self.manifest.shards[j].samples == 0:  # skip empty shards
            j += 1
        return j, i - self._starts[j]

    def get(self, i: int) -> Sample:
        """Sample ``i`` of the version: one ranged read once the shard's index is cached."""
        j, k = self.locate(i)
        return self.shard(j).read_sample(k)

    def __iter__(self) -> Iterator[Sample]:
        for j in range(len(self.manifest.shards)):
            yield from self.shard(j)

    def verify(self) -> list[str]:
        """Re-hash every shard and index; return the problems found (empty = all good)."""
        problems = []
        for s in self.manifest.shards:
            for path, size, sha in ((s.path, s.bytes, s.sha256), (s.index, s.index_bytes, s.index_sha256)):
                h, n = hashlib.sha256(), 0
                try:
                    with self.store.open(path) as f:
                        for chunk in iter(lambda f=f: f.read(1 << 20), b""):  # type: ignore[misc]
                            h.update(chunk)
                            n += len(chunk)
                except ObjectNotFound:
                    problems.append(f"{self.ref}: {path} is missing")
                    continue
                if n != size or h.hexdigest() != sha:
                    problems.append(f"{self.ref}: {path} does not match its checksum ({n} bytes, sha256 {h.hexdigest()[:12]}…; "
                                    f"manifest says {size} bytes, {sha[:12]}…)")
        return problems

    def read_rejects(self) -> Any:
        """The rejects table as a ``pyarrow.Table`` (empty table when nothing was rejected)."""

        import pyarrow.parquet as pq

        if not self.manifest.rejects:
            import pyarrow as pa

            return pa.table({"source": [], "reason": [], "detail": []})
        # one thread, from a native buffer: Arrow's reader threads aborted the interpreter at
        # exit ("terminate called without an active exception", exit 134) in about half of the
        # runs of `mmlake datalake rejects` (pyarrow 26); rejects tables are small
        import pyarrow as pa

        return pq.read_table(pa.BufferReader(self.store.read(self.manifest.rejects["path"])), use_threads=False)


class Lake:
    """The root of a data lake: datasets, their versions, writers and readers."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.uri = store.uri

    @classmethod
    def open(cls, uri: str) -> Lake:
        return cls(open_store(uri))

    def __repr__(self) -> str:
        return f"Lake({self.uri!r})"

    def dataset_store(self, name: str) -> Store:
        return self.store.sub(f"datasets/{validate_name(name)}")

    def writer(self, dataset: str, **kw: Any) -> VersionWriter:
        return VersionWriter(self, dataset, **kw)

    def datasets(self) -> list[str]:
        names = {p.split("/")[1] for p in self.store.list("datasets") if "/versions/" in p}
        return sorted(names)

    def versions(self, dataset: str) -> list[Manifest]:
        """Committed versions of ``dataset``, oldest first."""
        st = self.dataset_store(dataset)
        out = [Manifest.from_bytes(st.read(p), st.url(p)) for p in st.list("versions") if p.endswith(".json")]
        return sorted(out, key=lambda m: (m.created.get("at", ""), m.version))

    def manifest_uri(self, ref: str) -> str:
        name, version = parse_ref(ref)
        st = self.dataset_store(name)
        if version == "latest":
            try:
                version = st.read("refs/latest").decode().strip()
            except ObjectNotFound:
                raise VersionError(f"dataset {name!r} has no versions in {self.uri}; "
                                   f"known datasets: {self.datasets() or 'none'}") from None
        elif not st.exists(f"versions/{version}.json"):
            matches = [p for p in st.list("versions") if p.rsplit("/", 1)[-1].startswith(version)]
            if len(matches) != 1:
                known = [m.version for m in self.versions(name)] if self.store.exists(f"datasets/{name}/refs/latest") else []
                raise VersionError(f"{name}@{version}: {'ambiguous' if matches else 'no such version'} in "
                                   f"{self.uri}; versions: {known or 'none'}")
            version = matches[0].rsplit("/", 1)[-1][: -len(".json")]
        return st.url(f"versions/{version}.json")

    def open_version(self, ref: str) -> DatasetVersion:
        """Open ``name``, ``name@latest``, ``name@<version or prefix>`` or a manifest URI."""
        if "://" in ref:
            root = self.store.uri.rstrip("/") + "/"
            if ref.startswith(root) and "/versions/" in ref:  # inside this lake: reuse its store
                return DatasetVersion.open(ref, self.store.sub(ref[len(root):].rpartition("/versions/")[0]))
            return DatasetVersion.open(ref)
        if ref.endswith(".json"):
            from pathlib import Path

            return DatasetVersion.open(Path(ref).resolve().as_uri())
        name, _ = parse_ref(ref)
        return DatasetVersion.open(self.manifest_uri(ref), self.dataset_store(name))

    def gc(self, dataset: str, *, dry_run: bool = False) -> list[str]:
        """Delete staged shard directories that no committed manifest references.

        Run it when no writer of ``dataset`` is active: a writer's staged shards are
        unreferenced until it commits."""
        st = self.dataset_store(dataset)
        live = {s.path.split("/")[1] for m in self.versions(dataset) for s in m.shards}
        live |= {m.rejects["path"].split("/")[1] for m in self.versions(dataset) if m.rejects}
        dead = [p for p in st.list("shards") if p.split("/")[1] not in live]
        if not dry_run:
            for p in dead:
                st.delete(p)
        return dead


def write_version(lake: Lake, dataset: str, samples: Iterable[Sample], **kw: Any) -> DatasetVersion:
    """Write ``samples`` as a new version of ``dataset`` and commit it."""
    with lake.writer(dataset, **kw) as w:
        for s in samples:
            w.add(s)
        return w.commit()


__all__ += ["write_version", "commit_shards", "ShardError"]

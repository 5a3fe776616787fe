"""Shards (tar + index) and dataset versions (manifest last, digests, verification)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from datalake import Lake, LocalStore, Sample, VersionError, write_version
from datalake.shards import ShardError
from synth.shapes import shape_samples


def make_samples(n: int, seed: int = 0, size: tuple[int, int] = (96, 64)) -> list[Sample]:
    return shape_samples(n, seed, size)


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(LocalStore(tmp_path / "lake"))


def test_version_round_trip_and_refs(lake: Lake) -> None:
    samples = make_samples(25)
    v = write_version(lake, "shapes", samples, shard_samples=10)
    assert [s.samples for s in v.manifest.shards] == [10, 10, 5]
    assert list(v) == samples
    assert [v.get(i) for i in (0, 9, 10, 24)] == [samples[i] for i in (0, 9, 10, 24)]
    for ref in ("shapes", "shapes@latest", f"shapes@{v.manifest.version}", f"shapes@{v.manifest.version[:6]}", v.uri):
        assert lake.open_version(ref).manifest == v.manifest
    assert lake.datasets() == ["shapes"]
    st = v.manifest.stats
    assert st["samples"] == 25 and st["kinds"] == {"caption": 25} and st["media"] == 25
    assert sum(st["width"]["counts"]) == 25 and st["media_bytes"] == sum(len(s.blobs["0.jpg"]) for s in samples)
    assert v.verify() == []


def test_unknown_refs_say_what_exists(lake: Lake) -> None:
    write_version(lake, "shapes", make_samples(2))
    with pytest.raises(VersionError, match=r"dataset 'nope' has no versions .* known datasets: \['shapes'\]"):
        lake.open_version("nope")
    with pytest.raises(VersionError, match=r"shapes@ffff: no such version .* versions: \['"):
        lake.open_version("shapes@ffff")
    with pytest.raises(VersionError, match="invalid dataset name"):
        lake.open_version("../etc")
    with pytest.raises(VersionError, match="not a manifest URI"):
        lake.open_version("file:///tmp/x.json")


def test_shards_are_byte_reproducible_and_digest_is_stable(tmp_path: Path) -> None:
    samples = make_samples(12)
    a = write_version(Lake(LocalStore(tmp_path / "a")), "d", samples, shard_samples=5)
    b = write_version(Lake(LocalStore(tmp_path / "b")), "d", samples, shard_samples=5)
    assert [s.sha256 for s in a.manifest.shards] == [s.sha256 for s in b.manifest.shards]
    assert a.manifest.version == b.manifest.version and a.manifest.digest == b.manifest.digest
    c = write_version(Lake(LocalStore(tmp_path / "c")), "d", samples[:-1], shard_samples=5)
    assert c.manifest.version != a.manifest.version


def test_committing_identical_content_again_keeps_the_existing_version(lake: Lake) -> None:
    samples = make_samples(6)
    first = write_version(lake, "shapes", samples, shard_samples=4)
    manifest_bytes = lake.store.read(f"datasets/shapes/versions/{first.manifest.version}.json")
    again = write_version(lake, "shapes", samples, shard_samples=4)
    assert again.manifest == first.manifest  # same id, same creation info: untouched
    assert lake.store.read(f"datasets/shapes/versions/{first.manifest.version}.json") == manifest_bytes
    assert lake.gc("shapes", dry_run=True) == []  # the second write's staging was dropped
    assert list(again) == samples


def test_sample_i_is_one_ranged_read(lake: Lake) -> None:
    v = write_version(lake, "shapes", make_samples(30), shard_samples=30)
    reader = v.shard(0)
    _ = reader.index  # the index is fetched once per shard and cached
    lake.store.stats.reset()
    s = reader.read_sample(17)
    assert s.key == "s00017"
    assert dict(lake.store.stats.ops) == {"get_range": 1}
    assert lake.store.stats.bytes_read == reader.index.entries[17].length


def test_index_records_member_offsets_that_match_tar(lake: Lake) -> None:
    v = write_version(lake, "shapes", make_samples(5))
    path = Path(v.store.url(v.manifest.shards[0].path)[len("file://"):])
    raw = path.read_bytes()
    with tarfile.open(path) as tar:
        names = tar.getnames()
        for e in v.shard(0).index.entries:
            for suffix, (off, size) in e.members.items():
                ti = tar.getmember(f"{e.key}.{suffix}")
                assert raw[e.offset + off: e.offset + off + size] == tar.extractfile(ti).read()  # type: ignore[union-attr]
    assert names[:2] == ["s00000.json", "s00000.0.jpg"]
    out = subprocess.run(["tar", "-tf", str(path)], capture_output=True, text=True, check=True).stdout.split()
    assert out == names
    info = v.shard(0).index.entries[0].info
    assert info["kind"] == "caption" and info["media"] == [[96, 64]] and info["text_chars"] > 10


def test_webdataset_library_reads_the_shards(lake: Lake) -> None:
    import webdataset as wds

    samples = make_samples(14)
    v = write_version(lake, "shapes", samples, shard_samples=6)
    urls = [v.store.url(s.path)[len("file://"):] for s in v.manifest.shards]
    got = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))
    assert [g["__key__"] for g in got] == [s.key for s in samples]
    for g, s in zip(got, samples, strict=True):
        assert g["0.jpg"] == s.blobs["0.jpg"]
        assert json.loads(g["json"]) == s.to_json()


def test_exception_mid_write_leaves_no_version(lake: Lake) -> None:
    samples = make_samples(8)
    with pytest.raises(RuntimeError, match="boom"), lake.writer("shapes", shard_samples=3) as w:
        for s in samples:
            w.add(s)
        raise RuntimeError("boom")
    assert lake.datasets() == [] and lake.versions("shapes") == []
    assert list(lake.store.list("")) == []  # aborted staging is removed
    with pytest.raises(VersionError):
        lake.open_version("shapes")


def test_leaving_writer_without_commit_publishes_nothing(lake: Lake) -> None:
    with pytest.raises(RuntimeError, match="without commit"), lake.writer("shapes") as w:
        w.add(make_samples(1)[0])
    assert lake.versions("shapes") == []


def test_killed_process_between_shards_and_manifest_leaves_no_version(tmp_path: Path) -> None:
    """SIGKILL after every shard is uploaded but before the manifest: nothing is visible,
    the previous version stays latest, and gc removes the orphaned shards."""
    lake_dir = tmp_path / "lake"
    lake = Lake(LocalStore(lake_dir))
    old = write_version(lake, "shapes", make_samples(3))
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path[:0] = {sys.path!r}
        from synth.shapes import shape_samples as make_samples
        from datalake import Lake, LocalStore
        from datalake.version import Manifest
        lake = Lake(LocalStore({str(lake_dir)!r}))
        w = lake.writer("shapes", shard_samples=4)
        for s in make_samples(10, seed=5):
            w.add(s)
        w._flush()
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    old_dir = old.manifest.created["write_id"]
    staged = [p for p in lake.store.list("datasets/shapes/shards") if old_dir not in p]
    assert len(staged) == 6  # 3 shards + 3 indexes were uploaded ...
    assert [m.version for m in lake.versions("shapes")] == [old.manifest.version]  # ... but no version
    assert lake.open_version("shapes@latest").manifest == old.manifest
    assert sorted(lake.gc("shapes")) == sorted(p.removeprefix("datasets/shapes/") for p in staged)
    assert lake.open_version("shapes").verify() == []


def test_verify_and_reader_catch_corruption(lake: Lake) -> None:
    v = write_version(lake, "shapes", make_samples(4))
    path = Path(v.store.url(v.manifest.shards[0].path)[len("file://"):])
    raw = bytearray(path.read_bytes())
    raw[600] ^= 0xFF  # inside the first JSON record
    path.write_bytes(bytes(raw))
    problems = v.verify()
    assert len(problems) == 1 and "does not match its checksum" in problems[0] and v.manifest.shards[0].path in problems[0]
    with pytest.raises(ShardError, match=r"shapes@\w+ shard .*sample 's00000'"):
        v.get(0)


def test_tampered_manifest_is_refused(lake: Lake) -> None:
    v = write_version(lake, "shapes", make_samples(2))
    path = Path(v.uri[len("file://"):])
    doc = json.loads(path.read_text())
    doc["stats"]["samples"] = 3
    path.write_text(json.dumps(doc))
    with pytest.raises(VersionError, match="digest does not match its content"):
        lake.open_version("shapes")


def test_s3_version_round_trip_byte_identical(s3_store) -> None:  # type: ignore[no-untyped-def]
    lake = Lake(s3_store)
    samples = make_samples(20)
    v = write_version(lake, "shapes", samples, shard_samples=8)
    assert v.uri.startswith("s3://")
    again = lake.open_version("shapes@latest")
    got = list(again)
    assert [hashlib.sha256(g.blobs["0.jpg"]).hexdigest() for g in got] == \
           [hashlib.sha256(s.blobs["0.jpg"]).hexdigest() for s in samples]
    assert [g.to_json() for g in got] == [s.to_json() for s in samples]
    reader = again.shard(1)
    _ = reader.index
    s3_store.stats.reset()
    assert reader.read_sample(3) == samples[11]
    assert dict(s3_store.stats.ops) == {"get_range": 1}
    assert again.verify() == []

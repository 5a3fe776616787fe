"""Ingest: three source layouts, every bad input rejected with its reason, N + M = inputs,
byte-identical round trips on disk and on S3 (also through a throttling endpoint)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datalake import Lake, LocalStore, S3Options, S3Store
from datalake.ingest import IngestConfig, ingest
from synth.shapes import render_shapes, shape_samples
from tests.conftest import FaultProxy

EXPECTED_BAD = {"truncated_image": 1, "empty_file": 1, "too_many_pixels": 1, "non_utf8_text": 1,
                "missing_caption": 1, "invalid_json": 1}


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def source_images(root: Path) -> dict[str, bytes]:
    return {p.stem: p.read_bytes() for p in sorted((root / "00000").glob("*.jpg"))}


def test_folder_ingest_accounts_for_every_input(tmp_path: Path, caption_folder: tuple[Path, dict[str, int]]) -> None:
    root, expected = caption_folder
    lake = Lake(LocalStore(tmp_path / "lake"))
    r = ingest(str(root), lake, IngestConfig("caps", shard_samples=10), progress=False)
    assert r.ingested == expected["ok"] == 24
    assert r.rejected == EXPECTED_BAD
    assert r.ingested + sum(r.rejected.values()) == r.inputs == 30
    v = lake.open_version(r.output)
    assert len(v) == 24 and [s.samples for s in v.manifest.shards] == [10, 10, 4]
    # byte-identical media, equal records
    originals = source_images(root)
    got = {s.key: s for s in v}
    assert {k: sha(s.blobs["0.jpg"]) for k, s in got.items()} == {k: sha(b) for k, b in originals.items()}
    s = got["000000003"]
    assert s.text() == (root / "00000" / "000000003.txt").read_text()
    assert s.source.license == "CC0-1.0" and s.source.uri == "synth://shapes/1/3"
    assert s.meta["sha256"] == sha(originals["000000003"]) and s.meta["source_meta"]["labels"]
    # rejects table: one row per rejected input, with source and reason
    rej = v.read_rejects().to_pylist()
    assert sorted(r["reason"] for r in rej) == sorted(EXPECTED_BAD)
    by_reason = {r["reason"]: r for r in rej}
    assert by_reason["truncated_image"]["source"].endswith("bad/truncated")
    assert by_reason["too_many_pixels"]["detail"]
    assert v.manifest.rejects["reasons"] == EXPECTED_BAD  # type: ignore[index]


def test_same_version_whatever_the_number_of_workers(tmp_path: Path, caption_folder: tuple[Path, dict[str, int]]) -> None:
    root, _ = caption_folder
    a = ingest(str(root), Lake(LocalStore(tmp_path / "a")), IngestConfig("caps", workers=1), progress=False)
    b = ingest(str(root), Lake(LocalStore(tmp_path / "b")), IngestConfig("caps", workers=2), progress=False)
    assert a.output == b.output  # same digest


def test_jsonl_table_with_relative_absolute_and_bad_rows(tmp_path: Path) -> None:
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rows = []
    for i in range(6):
        im = render_shapes(3, i)
        (imgs / f"{i}.jpg").write_bytes(im.jpeg)
        path = f"imgs/{i}.jpg" if i % 2 else str(imgs / f"{i}.jpg")
        rows.append(json.dumps({"id": f"row{i}", "image": path, "caption": im.plain_caption()}))
    png = io.BytesIO()
    render_img = render_shapes(3, 99)
    (imgs / "wrong.jpg").write_bytes(_as_png(render_img.jpeg))  # PNG bytes behind a .jpg name: kept, noted
    rows.append(json.dumps({"id": "wrongext", "image": "imgs/wrong.jpg", "caption": "a png in disguise"}))
    rows.append("{broken json")
    rows.append(json.dumps({"id": "web", "image": "https://example.com/x.jpg", "caption": "remote"}))
    rows.append(json.dumps({"id": "gone", "image": "imgs/missing.jpg", "caption": "missing file"}))
    rows.append(json.dumps({"id": "row1", "image": "imgs/1.jpg", "caption": "duplicate key"}))
    rows.append(json.dumps({"id": "nocap", "image": "imgs/2.jpg"}))
    table = tmp_path / "table.jsonl"
    table.write_text("\n".join(rows) + "\n")
    del png
    lake = Lake(LocalStore(tmp_path / "lake"))
    r = ingest(str(table), lake, IngestConfig("tab"), progress=False)
    assert r.rejected == {"invalid_json": 1, "unsupported_uri": 1, "unreadable_source": 1, "duplicate_key": 1,
                          "missing_caption": 1}
    assert r.ingested == 7 and r.inputs == 12
    v = lake.open_version("tab")
    s = {x.key: x for x in v}
    assert s["wrongext"].media[0].name == "0.png" and s["wrongext"].media[0].mime == "image/png"
    assert s["wrongext"].meta["ext_mismatch"] == ".jpg file holds PNG"
    assert s["row0"].blobs["0.jpg"] == (imgs / "0.jpg").read_bytes()
    rej = {x["key"]: x for x in v.read_rejects().to_pylist()}
    assert rej["web"]["reason"] == "unsupported_uri" and "does not download" in rej["web"]["detail"]
    assert rej[None]["reason"] == "invalid_json" and rej[None]["source"].endswith("table.jsonl:8")


def _as_png(jpeg: bytes) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).save(out, "PNG")
    return out.getvalue()


def test_parquet_table_with_image_bytes_and_custom_columns(tmp_path: Path) -> None:
    ims = [render_shapes(4, i) for i in range(5)]
    table = pa.table({"uid": [f"p{i}" for i in range(5)], "img": [im.jpeg for im in ims],
                      "alt_text": [im.plain_caption() for im in ims]})
    pq.write_table(table, tmp_path / "t.parquet")
    lake = Lake(LocalStore(tmp_path / "lake"))
    with pytest.raises(ValueError, match="kind 'sft' comes from its own pipeline"):
        IngestConfig("pq", kind="sft")
    r = ingest(str(tmp_path / "t.parquet"), lake,
               IngestConfig("pq", image_column="img", caption_column="alt_text", key_column="uid"), progress=False)
    assert (r.ingested, r.rejected) == (5, {})
    assert [s.blobs["0.jpg"] for s in lake.open_version("pq")] == [im.jpeg for im in ims]


def _tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))


def test_webdataset_tars_including_our_own_records(tmp_path: Path) -> None:
    src = tmp_path / "tars"
    src.mkdir()
    ims = [render_shapes(5, i) for i in range(4)]
    _tar(src / "a-000.tar", [m for i, im in enumerate(ims) for m in
                             ((f"dir/x{i}.jpg", im.jpeg), (f"dir/x{i}.txt", im.plain_caption().encode()))]
         + [("dir/lonely.txt", b"no image")])
    ours = shape_samples(3, seed=9)
    bad = json.loads(ours[2].to_json_bytes())
    bad["annotations"][0]["xyxy"] = [0, 0, 5000, 10]
    _tar(src / "a-001.tar", [(f"{s.key}.json", s.to_json_bytes()) for s in ours[:2]]
         + [(f"{s.key}.0.jpg", s.blobs["0.jpg"]) for s in ours[:2]]
         + [(f"{ours[2].key}.json", json.dumps(bad).encode()), (f"{ours[2].key}.0.jpg", ours[2].blobs["0.jpg"])])
    # interleave members properly: WebDataset groups consecutive members by key
    _tar(src / "a-001.tar", [m for s in ours[:2] for m in ((f"{s.key}.json", s.to_json_bytes()), (f"{s.key}.0.jpg", s.blobs["0.jpg"]))]
         + [(f"{ours[2].key}.json", json.dumps(bad).encode()), (f"{ours[2].key}.0.jpg", ours[2].blobs["0.jpg"])])
    lake = Lake(LocalStore(tmp_path / "lake"))
    r = ingest(str(src), lake, IngestConfig("wds"), progress=False)
    assert r.inputs == 8 and r.ingested == 6
    assert r.rejected == {"missing_image": 1, "invalid_record": 1}
    got = {s.key: s for s in lake.open_version("wds")}
    assert got["dir-x2"].blobs["0.jpg"] == ims[2].jpeg
    assert got[ours[0].key] == ours[0]  # an mmlake record keeps its annotations
    rej = {x["reason"]: x["detail"] for x in lake.open_version("wds").read_rejects().to_pylist()}
    assert "annotations[0].xyxy: x=5000 is outside media 0" in rej["invalid_record"]


def test_truncated_tar_rejects_the_tail_and_keeps_the_rest(tmp_path: Path) -> None:
    ims = [render_shapes(6, i, (256, 256), noise=40) for i in range(4)]
    full = tmp_path / "full.tar"
    _tar(full, [m for i, im in enumerate(ims) for m in ((f"k{i}.jpg", im.jpeg), (f"k{i}.txt", b"caption words"))])
    raw = full.read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(raw[: len(raw) * 3 // 4])
    r = ingest(str(cut), Lake(LocalStore(tmp_path / "lake")), IngestConfig("cut"), progress=False)
    assert r.rejected == {"unreadable_tar": 1}
    assert r.ingested >= 2 and r.ingested + 1 == r.inputs


def test_missing_source_and_empty_source_are_clear_errors(tmp_path: Path) -> None:
    lake = Lake(LocalStore(tmp_path / "lake"))
    with pytest.raises(ValueError, match="does not exist: give a folder"):
        ingest(str(tmp_path / "nope"), lake, IngestConfig("x"), progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no inputs found"):
        ingest(str(tmp_path / "empty"), lake, IngestConfig("x"), progress=False)
    assert lake.datasets() == []


def test_s3_ingest_round_trip_through_throttling_endpoint(s3_endpoint: str, tmp_path: Path,
                                                          caption_folder: tuple[Path, dict[str, int]]) -> None:
    """The lake on S3, behind a proxy answering 503 SlowDown to the first 8 requests and to
    every 7th after: the version is complete and byte-identical."""
    root, _ = caption_folder
    with FaultProxy(s3_endpoint, fail_first=8, fail_every=7) as proxy:
        store = S3Store(f"ingest-throttled-{os.getpid()}-{time.monotonic_ns()}", "lake", S3Options(endpoint_url=proxy.url, base_delay=0.005, max_delay=0.05))
        store.create_bucket()
        lake = Lake(store)
        r = ingest(str(root), lake, IngestConfig("caps", shard_samples=7), progress=False)
        v = lake.open_version("caps@latest")
        got = {s.key: sha(s.blobs["0.jpg"]) for s in v}
        assert v.verify() == []
        assert v.get(5).key == sorted(got)[5]
    assert proxy.failed >= 8 and store.stats.retries == proxy.failed  # every 503 was retried, nothing else failed
    assert r.ingested == 24 and r.rejected == EXPECTED_BAD
    assert got == {k: sha(b) for k, b in source_images(root).items()}


def test_ingest_from_s3_source(s3_store: S3Store, tmp_path: Path) -> None:
    ims = [render_shapes(7, i) for i in range(3)]
    for i, im in enumerate(ims):
        s3_store.put(f"raw/{i:03d}.jpg", im.jpeg)
        s3_store.put(f"raw/{i:03d}.txt", im.plain_caption().encode())
    s3_store.put("raw/003.jpg", b"")
    lake = Lake(LocalStore(tmp_path / "lake"))
    os.environ["MMLAKE_S3_ENDPOINT"] = s3_store.client.meta.endpoint_url
    try:
        r = ingest(s3_store.url("raw"), lake, IngestConfig("from-s3"), progress=False)
    finally:
        del os.environ["MMLAKE_S3_ENDPOINT"]
    assert (r.ingested, r.rejected) == (3, {"empty_file": 1})
    assert [s.blobs["0.jpg"] for s in lake.open_version("from-s3")] == [im.jpeg for im in ims]

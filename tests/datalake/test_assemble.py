"""Multi-image documents assembled from caption data: real photos (scikit-image and matplotlib
wheels) ingested from two folders, grouped by folder, cut into seeded documents of 2-4
image-caption pairs, with lineage, every input accounted for, the same seed the same version."""

from __future__ import annotations

import shutil
from pathlib import Path

from datalake import Lake, LocalStore
from datalake.assemble import assemble, assemble_documents
from datalake.ingest import IngestConfig
from datalake.sample import MediaPart, TextPart
from registry.jobs import run_ingest
from registry.service import Registry
from tests.realdata import image_sample, photo_paths


def test_documents_from_caption_folders(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    photos = photo_paths()
    for p in photos:
        folder = raw / ("matplotlib" if "matplotlib" in str(p) else "skimage")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, folder / p.name)
        (folder / f"{p.stem}.txt").write_text(f"A photograph: {p.stem.replace('_', ' ')}.")
    lake = Lake(LocalStore(tmp_path / "lake"))
    reg = Registry(f"sqlite:///{tmp_path / 'r.db'}")
    run_ingest(reg, lake, [str(raw)], IngestConfig("photos"), progress=False)
    out = assemble_documents(reg, lake, "photos@latest", "photo-docs", by="source", min_images=2, max_images=4, seed=3)
    assert out["inputs"] == len(photos) == out["images"] + sum(out["left_out"].values())
    assert out["left_out"] == {"group_too_small": 1}  # matplotlib's one photo has no partner
    v = reg.open_version(out["output"])
    by_key = {s.key: s for s in lake.open_version("photos")}
    seen = []
    for d in v:
        assert d.kind == "interleaved" and d.meta["synthetic"] is True and 2 <= len(d.media) <= 4
        members = d.meta["assembled"]["members"]
        assert d.meta["assembled"]["group"].endswith("/skimage") and members == sorted(members)
        # image, its caption, next image ...: each pair is the member's own bytes and text
        for k, key in enumerate(members):
            img, cap = d.content[2 * k], d.content[2 * k + 1]
            assert isinstance(img, MediaPart) and isinstance(cap, TextPart)
            src = by_key[key]
            assert d.blobs[d.media[img.media].name] == src.blobs[src.media[0].name] and cap.text == src.text()
        seen += members
    assert len(seen) == len(set(seen)) == out["images"]
    assert reg.lineage(out["output"], "up").versions() == sorted([out["output"], "photos@1"])
    again = assemble_documents(reg, lake, "photos@1", "photo-docs-2", by="source", min_images=2, max_images=4, seed=3)
    same = [(d.key, d.meta["assembled"]["members"]) for d in reg.open_version(again["output"])]
    assert same == [(d.key, d.meta["assembled"]["members"]) for d in v]  # the same seed: the same documents
    # the same files ingested from another folder: the same documents (the group's path is not the seed)
    moved = tmp_path / "elsewhere" / "deeper"
    shutil.copytree(raw, moved)
    run_ingest(reg, lake, [str(moved)], IngestConfig("photos-moved"), progress=False)
    there = assemble_documents(reg, lake, "photos-moved@latest", "photo-docs-3", by="source", min_images=2,
                               max_images=4, seed=3)
    assert [d.meta["assembled"]["members"] for d in reg.open_version(there["output"])] == \
        [d.meta["assembled"]["members"] for d in v]
    reg.close()


def test_by_tag_and_what_is_not_a_caption_pair() -> None:
    import io
    from collections import Counter

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 20, 30)).save(buf, "PNG")
    samples = [image_sample(f"k{i}", buf.getvalue(), f"caption {i}") for i in range(5)]
    import dataclasses

    samples = [dataclasses.replace(s, meta={"tags": ["cats" if i < 3 else "dogs"]}) for i, s in enumerate(samples)]
    samples.append(dataclasses.replace(samples[0], key="doc", kind="interleaved"))
    left: Counter[str] = Counter()
    docs = list(assemble(samples, by="tag", min_images=2, max_images=2, seed=0, left_out=left))
    groups = sorted((d.meta["assembled"]["group"], d.meta["assembled"]["members"]) for d in docs)
    assert groups == [("cats", ["k0", "k1"]), ("dogs", ["k3", "k4"])]
    assert left == {"group_too_small": 1, "not_a_caption_pair": 1}

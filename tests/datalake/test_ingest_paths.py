"""Ingest paths for every common input, and failures that never look like success."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from datalake import Lake
from datalake.ingest import EmptyIngest, IngestConfig, ingest
from synth.shapes import write_caption_folder
from tests.realdata import icon_paths, photo_paths


def test_two_img2dataset_folders_with_the_same_keys_are_both_ingested(tmp_path: Path) -> None:
    a, b = tmp_path / "crawl-a", tmp_path / "crawl-b"
    write_caption_folder(a, 6, seed=1, size=(96, 64))
    write_caption_folder(b, 6, seed=2, size=(96, 64))  # both start at 000000000
    res = ingest([str(a), str(b)], Lake.open(str(tmp_path / "lake")), IngestConfig(dataset="both"))
    assert res.ingested == 12 and res.rejected == {}
    keys = [s.key for s in Lake.open(str(tmp_path / "lake")).open_version("both@latest")]
    assert len(set(keys)) == 12
    assert any(k.startswith("crawl-a-") for k in keys) and any(k.startswith("crawl-b-") for k in keys)


def test_images_without_captions_and_text_corpora(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, p in enumerate(photo_paths()[:5]):
        shutil.copy(p, photos / f"{i:03d}{p.suffix}")
    lake = Lake.open(str(tmp_path / "lake"))
    res = ingest(str(photos), lake, IngestConfig(dataset="photos", kind="image"))
    assert res.ingested == 5
    s = next(iter(lake.open_version("photos@latest")))
    assert s.kind == "caption" and s.text() == "" and s.meta["captioned"] is False
    with pytest.raises(EmptyIngest, match="missing_caption"):  # as caption pairs they all lack captions
        ingest(str(photos), lake, IngestConfig(dataset="pairs"))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("一只棕色的狗在海滩上奔跑。")
    (docs / "b.md").write_text("# Title\n\nSome prose.")
    (docs / "c.txt").write_bytes(b"\xff\xfe broken")
    table = tmp_path / "corpus.jsonl"
    table.write_text("\n".join(json.dumps({"id": f"r{i}", "text": f"document number {i}"}) for i in range(3)))
    res = ingest([str(docs), str(table)], lake, IngestConfig(dataset="corpus", kind="text"))
    assert res.ingested == 5 and res.rejected == {"non_utf8_text": 1}
    texts = sorted(s.text() for s in lake.open_version("corpus@latest"))
    assert "一只棕色的狗在海滩上奔跑。" in texts and all(s.kind == "text" for s in lake.open_version("corpus@latest"))


def test_a_folder_of_videos_html_or_svg_fails_with_what_to_do_and_registers_nothing(tmp_path: Path) -> None:
    from mmlake.cli import main

    src = tmp_path / "media"
    src.mkdir()
    (src / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    (src / "page.html").write_text("<html><body>hi</body></html>")
    svg = next(iter(icon_paths("scalable/*/*.svg", n=1)), None)
    (src / "logo.svg").write_bytes(svg.read_bytes() if svg else b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    home = tmp_path / "home"
    env = {"MMLAKE_HOME": str(home)}
    r = CliRunner().invoke(main, ["ingest", str(src), "--dataset", "media", "--lake", str(tmp_path / "lake"), "--json"],
                           env=env)
    assert r.exit_code != 0
    assert "ingested 0 of 3 inputs" in r.output
    assert "video files have no ingest path yet" in r.output and "--allow-empty" in r.output
    r2 = CliRunner().invoke(main, ["datalake", "ls", "--lake", str(tmp_path / "lake"), "--json"], env=env)
    assert "media" not in r2.output
    ok = CliRunner().invoke(main, ["ingest", str(src), "--dataset", "media", "--lake", str(tmp_path / "lake"),
                                   "--allow-empty", "--json", "--no-register"], env=env)
    assert ok.exit_code == 0, ok.output
    out = json.loads(ok.output.strip().splitlines()[-1])
    assert out["ingested"] == 0 and out["rejected"] == {"unsupported_format": 3}


def test_svg_bytes_are_an_unsupported_format_not_garbage() -> None:
    from datalake.media import MediaError, probe_image

    with pytest.raises(MediaError) as e:
        probe_image(b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
    assert e.value.reason == "unsupported_format" and "rasterise" in e.value.detail

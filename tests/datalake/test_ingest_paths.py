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
    assert "videos: ingest the folder with --kind video" in r.output and "--allow-empty" in r.output
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


def _screenshot(folder: Path, stem: str, elements: list[dict], size: tuple[int, int] = (320, 200)) -> None:
    from PIL import Image, ImageDraw

    im = Image.new("RGB", size, (245, 245, 245))
    d = ImageDraw.Draw(im)
    for el in elements:
        x0, y0, x1, y1 = el["bbox"]
        d.rectangle((x0, y0, x1, y1), outline=(30, 30, 200), width=2)
        d.text((x0 + 4, y0 + 4), el.get("text", ""), fill=(0, 0, 0))
    im.save(folder / f"{stem}.png")
    (folder / f"{stem}.json").write_text(json.dumps({"platform": "web", "elements": elements}))


@pytest.mark.parametrize("mode", ["clip", "drop", "reject"])
def test_agent_screenshots_with_element_files_and_an_off_screen_box(tmp_path: Path, mode: str) -> None:
    src = tmp_path / "shots"
    src.mkdir()
    _screenshot(src, "s1", [{"bbox": [10, 10, 120, 40], "text": "Sign in", "type": "button"},
                            {"bbox": [200, 150, 400, 190], "text": "Footer link", "type": "link"},  # runs off the right edge
                            {"bbox": [400, 10, 450, 30], "text": "hidden", "type": "link"}])  # wholly off screen
    _screenshot(src, "s2", [{"bbox": [20, 60, 300, 90], "text": "Search", "type": "textbox"}])
    lake = Lake.open(str(tmp_path / "lake"))
    res = ingest(str(src), lake, IngestConfig(dataset="gui", kind="agent", out_of_view=mode))
    got = {s.key: s for s in lake.open_version("gui@latest")}
    assert res.inputs == 2
    if mode == "reject":
        assert list(got) == ["s2"] and res.rejected == {"invalid_record": 1}
        return
    s1 = got["s1"]
    assert s1.kind == "agent" and all(a.role == "ui_element" for a in s1.annotations)
    assert s1.meta["elements"] == {"given": 3, "kept": 2 if mode == "clip" else 1,
                                   "clipped": 1 if mode == "clip" else 0, "dropped": 1 if mode == "clip" else 2}
    if mode == "clip":
        assert s1.annotations[1].xyxy == (200.0, 150.0, 320.0, 190.0)
    assert "button \"Sign in\" {box:0}" in s1.text()


def test_long_documents_do_not_saturate_the_histograms() -> None:
    from datalake.stats import PAGES_EDGES, TEXT_EDGES, Histogram

    text, pages = Histogram(TEXT_EDGES), Histogram(PAGES_EDGES)
    for chars, n in ((90_000, 87), (400_000, 400), (2_500_000, 1620)):  # manuals: bash(1), a book, a big PDF
        text.add(chars)
        pages.add(n)
    assert text.counts[-1] == 0 and len({i for i, c in enumerate(text.counts) if c}) == 3
    assert pages.counts[-1] == 0 and len({i for i, c in enumerate(pages.counts) if c}) == 3


def test_distinct_names_stay_distinct_keys(tmp_path: Path) -> None:
    """``a b.jpg``, ``a_b.jpg`` and ``a+b.jpg`` are three inputs: three keys, none a duplicate;
    names that are keys already keep them, and the original name stays in the source."""
    from datalake import Lake, LocalStore
    from datalake.ingest import IngestConfig, ingest
    from synth.shapes import render_shapes

    src = tmp_path / "names"
    src.mkdir()
    for i, stem in enumerate(["a b", "a_b", "a+b", "plain-00", "ü-photo"]):
        (src / f"{stem}.jpg").write_bytes(render_shapes(1, i, (64, 48)).jpeg)
        (src / f"{stem}.txt").write_text(f"picture number {i}")
    lake = Lake(LocalStore(tmp_path / "lake"))
    res = ingest(str(src), lake, IngestConfig("names"), progress=False)
    assert res.ingested == 5 and res.rejected == {}
    samples = {s.key: s for s in lake.open_version("names")}
    assert {"a_b", "plain-00"} <= set(samples) and len(samples) == 5
    from urllib.parse import unquote

    by_source = {unquote(s.source.uri.rsplit("/", 1)[-1]): k for k, s in samples.items()}
    assert by_source["a_b.jpg"] == "a_b" and by_source["a b.jpg"] != by_source["a+b.jpg"]
    assert by_source["a b.jpg"].startswith("a_b-") and len(by_source["a b.jpg"]) == len("a_b-") + 8

"""OCR engines on rendered text with exact ground truth, the OCR stage in a pipeline, and the
synthetic text generator's geometry."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from pipelines.ocr import OcrStage, polygon_area
from pipelines.ocr.engines import OcrEngineUnavailable, make_engine
from pipelines.ocr.quality import cer, edit_distance
from synth.text import find_fonts, render_page, text_samples, warp_points

SANS = next(f for f in find_fonts()["latin"] if f.endswith("DejaVuSans.ttf"))
SERIF = next(f for f in find_fonts()["latin"] if f.endswith("DejaVuSerif.ttf"))


def _pixels(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))


def test_cer_is_the_edit_distance_per_reference_character() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert cer("the  cat\nsat", "the cat sat") == 0.0
    assert cer("the cot sat", "the cat sat") == pytest.approx(1 / 11)


@pytest.mark.parametrize("engine", ["rapidocr", "tesseract"])
def test_engines_read_clean_rendered_text(engine: str) -> None:
    """Clean pages (two fonts, 18-28 px): CER <= 1 %, lines in reading order."""
    eng = make_engine(engine)
    errors, chars = 0.0, 0
    for i, (font, size) in enumerate([(SANS, 18), (SERIF, 22), (SANS, 28)]):
        page = render_page(5, i, size=(640, 320), font=font, font_size=size, augment=False, lines=4)
        lines = eng(_pixels(page.jpeg))
        got = "\n".join(ln.text for ln in lines)
        errors += cer(got, page.text) * len(page.text)
        chars += len(page.text)
        assert len(lines) >= len(page.lines) - 1
    assert errors / chars <= 0.01, errors / chars


@pytest.mark.parametrize("engine", ["rapidocr", "tesseract"])
def test_engines_read_dense_pages_of_long_small_lines(engine: str) -> None:
    """Full-width lines of 16 px serif text, a page of them: CER <= 1 %. (rapidocr's 180-degree
    line classifier used to flip such lines upside down and read garbage; it is off for pages.)"""
    eng = make_engine(engine)
    errors, chars = 0.0, 0
    for p in range(2):
        page = render_page(7, 16_100 + p, size=(640, 360), font=SERIF, font_size=16, augment=False)
        got = "\n".join(ln.text for ln in eng(_pixels(page.jpeg)))
        errors += cer(got, page.text) * len(page.text)
        chars += len(page.text)
    assert errors / chars <= 0.01, errors / chars


def test_paddleocr_without_models_says_what_is_missing() -> None:
    with pytest.raises(OcrEngineUnavailable, match="model directory") as exc:
        make_engine("paddleocr").load()
    assert "rapidocr" in str(exc.value)  # and what to use instead
    with pytest.raises(OcrEngineUnavailable, match="does not exist"):
        make_engine("paddleocr", model_dir="/nonexistent/models").load()
    with pytest.raises(ValueError, match="unknown OCR engine"):
        make_engine("abbyy")


def test_ocr_stage_adds_lines_words_and_page_meta() -> None:
    sample = text_samples(1, seed=3, size=(640, 320), augment=False)[0]
    truth = [a for a in sample.annotations if a.role == "ocr_line"]
    bare = type(sample)(**{**sample.__dict__, "annotations": (), "content": sample.content[:1]})
    stage = OcrStage(OcrStage.Config(engine="rapidocr", as_transcript=True, with_boxes=True))
    stage.setup()
    out = stage.map(bare)
    lines = [a for a in out.annotations if a.role == "ocr_line"]
    page = out.meta["ocr"]["0.jpg"]
    assert page["engine"] == "rapidocr" and page["lines"] == len(lines) >= len(truth) - 1
    assert page["mean_confidence"] > 0.8 and 0 < page["text_area_ratio"] < 0.6
    assert cer(page["text"], "\n".join(str(t.text) for t in truth)) <= 0.02
    # each detected line overlaps its ground-truth line polygon
    for a, t in zip(lines, truth, strict=False):
        ax = np.asarray(a.points)
        tx = np.asarray(t.points)
        ix = max(0.0, min(ax[:, 0].max(), tx[:, 0].max()) - max(ax[:, 0].min(), tx[:, 0].min()))
        iy = max(0.0, min(ax[:, 1].max(), tx[:, 1].max()) - max(ax[:, 1].min(), tx[:, 1].min()))
        assert ix * iy / polygon_area([list(p) for p in t.points]) > 0.5
    # as a transcript: an ocr sample whose text names each line's polygon by placeholder
    assert out.kind == "ocr" and "{polygon:" in out.content[-1].text


@pytest.mark.parametrize("script", ["latin", "cjk", "handwriting"])
def test_synthetic_polygons_contain_their_text_after_augmentation(script: str) -> None:
    """Each word's polygon, after rotation + perspective, against the word's ink box re-rendered
    as a mask and warped by the same homography: IoU >= 0.9."""
    k = 4  # compare at 4x resolution, so pixel rounding does not dominate small words
    scale = np.diag([k, k, 1.0])
    for i in range(3 if script == "latin" else 2):
        page = render_page(11, i, size=(480, 320), augment=True, script=script)
        h = np.asarray(page.params["homography"])
        hk = scale @ h @ np.linalg.inv(scale)
        inv = np.linalg.inv(hk)
        inv = inv / inv[2, 2]
        size = (page.width * k, page.height * k)
        pixels = np.asarray(Image.open(io.BytesIO(page.jpeg)).convert("L"), dtype=np.float32)
        for wd in page.words[:12]:
            # the word's ink box before augmentation, re-rendered as a mask and warped like the pixels
            quad0 = warp_points(np.linalg.inv(h), np.asarray(wd.polygon)) * k
            mask0 = Image.new("L", size, 0)
            ImageDraw.Draw(mask0).rectangle([quad0[:, 0].min(), quad0[:, 1].min(), quad0[:, 0].max(),
                                             quad0[:, 1].max()], fill=255)
            warped = np.asarray(mask0.transform(size, Image.Transform.PERSPECTIVE, data=tuple(inv.ravel()[:8]),
                                                resample=Image.Resampling.BILINEAR)) > 127
            poly = Image.new("L", size, 0)
            ImageDraw.Draw(poly).polygon([(x * k, y * k) for x, y in wd.polygon], fill=255)
            pm = np.asarray(poly) > 127
            iou = (pm & warped).sum() / max(1, (pm | warped).sum())
            assert iou >= 0.9, (wd.text, iou)
            # and there is ink inside: the polygon is darker than the page around it
            small = np.asarray(poly.resize((page.width, page.height))) > 127
            assert pixels[small].mean() < np.median(pixels) - 20, wd.text
        assert page.params["rotate_deg"] != 0 and "perspective" in page.params


def test_synthetic_text_samples_are_valid_deterministic_ocr_samples(tmp_path: Path) -> None:
    a = text_samples(2, seed=1, size=(320, 200))
    b = text_samples(2, seed=1, size=(320, 200))
    assert [s.blobs["0.jpg"] for s in a] == [s.blobs["0.jpg"] for s in b]
    s = a[0]
    assert s.kind == "ocr" and s.meta["synthetic"] is True
    roles = {x.role for x in s.annotations}
    assert roles == {"ocr_line", "ocr_word"}
    words = [x for x in s.annotations if x.role == "ocr_word"]
    assert " ".join(str(w.text) for w in words) == s.content[-1].text.replace("\n", " ")

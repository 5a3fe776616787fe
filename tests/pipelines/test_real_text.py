"""Text rules for every script (real Chinese text from Debian's refcard), LSH bands from the
threshold with recall measured at it, and caption pairs deduplicated by image, not by text."""

from __future__ import annotations

import gzip
import io
import re
from pathlib import Path

import numpy as np
import pytest

from datalake.sample import Media, MediaPart, Sample, Source, TextPart
from pipelines.dedupe_core import find_pairs
from pipelines.quality import text_quality
from pipelines.stage import build_stage

REFCARD_ZH = Path("/usr/share/doc/debian-refcard/refcard-zh_CN-a4.pdf.gz")


@pytest.fixture(scope="module")
def chinese_lines() -> list[str]:
    from datalake.pdf import render_pdf

    assert REFCARD_ZH.exists(), "make setup installs debian-refcard"
    text = "\n".join(p.text for p in render_pdf(gzip.decompress(REFCARD_ZH.read_bytes()), dpi=50))
    lines = [ln for ln in text.splitlines() if len(re.findall("[\u4e00-\u9fff]", ln)) >= 8]
    assert len(lines) >= 5
    return lines


def _text(key: str, t: str) -> Sample:
    return Sample(key=key, kind="text", source=Source("t://"), content=(TextPart(t),))


def test_chinese_text_has_words_and_passes_word_rules(chinese_lines: list[str]) -> None:
    st = build_stage("text_filter", {"min_words": 3, "max_dup_ngram_frac": 0.5})
    for ln in chinese_lines:
        sc = st.score(_text("zh", ln))
        assert sc["words"] >= len(re.findall("[\u4e00-\u9fff]", ln))  # a Han character is a word
        assert st.decide(sc) is None, (ln, sc)


def test_a_small_edit_of_chinese_text_is_a_near_duplicate(chinese_lines: list[str]) -> None:
    st = build_stage("dedupe_text", {"threshold": 0.5})
    base = "".join(re.findall("[\u4e00-\u9fff]", "".join(chinese_lines[:6])))  # Han only: no spaces at all
    edited = base[:10] + "数据湖" + base[13:]  # three characters replaced
    other = "".join(re.findall("[\u4e00-\u9fff]", "".join(chinese_lines[-6:])))
    sigs = st.signatures([_text("a", base), _text("b", edited), _text("c", other)])
    assert st.verify(sigs[0], sigs[1]) and not st.verify(sigs[0], sigs[2])
    pairs = find_pairs(st, [r for i, s in enumerate(sigs) for r in st.band_records(i, s)])
    assert pairs == {(0, 1)}


@pytest.mark.parametrize("threshold", [0.5, 0.8])
def test_lsh_bands_follow_the_threshold_and_recall_holds_at_it(threshold: float) -> None:
    st = build_stage("dedupe_text", {"threshold": threshold})
    assert st.BANDS * st.ROWS <= st.PERMS
    q = text_quality(n_docs=300, n_dups=300, threshold=threshold, seed=3, max_edit_frac=0.3)
    assert q["pairs_near_threshold"] >= 15, q  # pairs within 0.1 above the threshold: where LSH loses them
    assert q["recall_near_threshold"] >= 0.95 and q["recall"] >= 0.95 and q["precision"] >= 0.99, q


def test_caption_pairs_are_not_deduplicated_by_their_text_unless_asked() -> None:
    from PIL import Image

    def cap(key: str, seed: int) -> Sample:
        arr = np.random.default_rng(seed).integers(0, 255, (64, 64, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "PNG")
        return Sample(key=key, kind="caption", source=Source("t://"), media=(Media("0.png", "image/png", 64, 64),),
                      content=(MediaPart(0), TextPart("A product photo on a white background")),
                      blobs={"0.png": buf.getvalue()})

    items = [cap("a", 1), cap("b", 2)]
    default = build_stage("dedupe_text", {})
    assert default.signatures(items) == [None, None]
    explicit = build_stage("dedupe_text", {"captions": True})
    s = explicit.signatures(items)
    assert explicit.verify(s[0], s[1])

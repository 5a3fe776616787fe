"""Every registered stage passes the contract; each built-in stage does what it says."""

from __future__ import annotations

import dataclasses
import functools
import io
import json

import numpy as np
import pytest
from PIL import Image

import pipelines.stages  # noqa: F401  (registers)
from datalake.sample import Media, MediaPart, Sample, Source, TextPart
from pipelines.dedupe_core import clusters, find_pairs
from pipelines.stage import STAGES, DedupeStage, FilterStage, MapStage, Reject, SpecError, build_stage
from synth.shapes import render_shapes, shape_samples


def jpeg(arr: np.ndarray, quality: int = 90, exif: bytes | None = None) -> bytes:
    buf = io.BytesIO()
    kw = {"exif": exif} if exif else {}
    Image.fromarray(arr.astype(np.uint8)).save(buf, "JPEG", quality=quality, **kw)
    return buf.getvalue()


def sample(key: str, text: str, img: bytes | None = None, size: tuple[int, int] | None = None) -> Sample:
    if img is None:
        return Sample(key=key, kind="text", source=Source("t://"), content=(TextPart(text),))
    w, h = size or Image.open(io.BytesIO(img)).size
    return Sample(key=key, kind="caption", source=Source("t://"), media=(Media("0.jpg", "image/jpeg", w, h),),
                  content=(MediaPart(0), TextPart(text)), blobs={"0.jpg": img})


@functools.lru_cache(maxsize=1)
def _video_items() -> list[Sample]:
    """Four small synthetic videos with their shots and keyframes (what the video stages read)."""
    from synth.video import render_video, video_sample

    shots = build_stage("video_shots", {})
    return [shots.map(video_sample(render_video(11, i, size=(160, 120), n_scenes=2))) for i in range(4)]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_contract(name: str) -> None:
    cls = STAGES[name]
    st = build_stage(name, {})
    assert st.name == name and cls.kind in ("map", "filter", "dedupe")
    with pytest.raises(SpecError, match=f"stage {name}: unknown parameter"):
        build_stage(name, {"no_such_param": 1})
    st.setup()
    items = _video_items() if name in ("video_shots", "video_filter", "video_caption", "dedupe_video") else \
        shape_samples(4, seed=11, size=(160, 120))
    if isinstance(st, MapStage):
        out = st.map(items[0])
        assert isinstance(out, Sample) and out.key == items[0].key
        assert {k: out.blobs[k] for k in items[0].blobs} == items[0].blobs  # original bytes are never changed
    elif isinstance(st, FilterStage):
        scores = [st.score(s) for s in items]
        assert all(json.loads(json.dumps(sc)) == sc for sc in scores)  # JSON-able, stored as they are
        assert [st.decide(sc) for sc in scores] == [st.decide(sc) for sc in scores]
        # scores never depend on thresholds: a differently configured stage scores the same
        other = build_stage(name, {f.name: f.default for f in dataclasses.fields(cls.Config)})
        assert [other.score(s) for s in items] == scores
    elif getattr(st, "prunes_parts", False):  # counted by the driver: images in too many documents
        assert isinstance(st, DedupeStage)
        docs = [dataclasses.replace(s, kind="interleaved") for s in items]
        sigs = st.signatures(docs + [docs[0]] * 20)
        over, seen = st.over_limit(sigs)
        assert over == set(sigs[0]) and seen[sigs[0][0]] == 21 and all(seen[sig[0]] == 1 for sig in sigs[1:4])
        assert st.signature(items[0]) is None  # only interleaved documents
    else:
        assert isinstance(st, DedupeStage)
        if name == "dedupe_text":  # caption pairs are left to the image dedupe unless asked
            assert st.signatures(items) == [None] * len(items)
            st = build_stage(name, {"captions": True})
        sigs = st.signatures(items + [dataclasses.replace(items[0], key="copy")])
        assert sigs == [st.signature(s) for s in items + [dataclasses.replace(items[0], key="copy")]]
        assert st.verify(sigs[0], sigs[-1])  # a copy is a duplicate
        records = [r for i, s in enumerate(sigs) for r in st.band_records(i, s)]
        pairs = find_pairs(st, records)
        assert (0, 4) in pairs
        dup = clusters(pairs, {i: (0, f"k{i}") for i in range(5)})
        assert dup.get(4) == 0 or dup.get(0) == 4


def test_decode_rejects_bad_images_and_records_exif_orientation() -> None:
    st = build_stage("decode", {"max_pixels": 10_000})
    good = jpeg(np.full((40, 60, 3), 128))
    assert st.map(sample("a", "x", good)).meta == {}
    with pytest.raises(Reject) as r:
        st.map(sample("b", "x", good[: len(good) // 2], (60, 40)))
    assert r.value.reason == "truncated_image"
    with pytest.raises(Reject) as r:
        st.map(sample("c", "x", jpeg(np.zeros((200, 100, 3))), (100, 200)))
    assert r.value.reason == "too_many_pixels"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 to display
    out = st.map(sample("d", "x", jpeg(np.full((40, 60, 3), 50), exif=exif.tobytes())))
    assert out.meta["exif_orientation"] == {"0.jpg": 6} and out.meta["display_size"] == {"0.jpg": [40, 60]}
    assert Image.open(io.BytesIO(out.blobs["0.jpg"])).size == (60, 40)  # pixels untouched
    with pytest.raises(Reject) as r:
        st.map(sample("e", "x", good, (61, 40)))
    assert r.value.reason == "size_mismatch"


def test_image_filter_reasons() -> None:
    rng = np.random.default_rng(0)
    st = build_stage("image_filter", {"min_side": 32, "max_aspect": 3.0, "min_std": 3.0, "min_blur": 50.0})
    textured = rng.integers(0, 255, (64, 64, 3))
    cases = {
        "too_small": jpeg(rng.integers(0, 255, (16, 64, 3))),
        "extreme_aspect": jpeg(rng.integers(0, 255, (40, 160, 3))),
        "near_uniform": jpeg(np.full((64, 64, 3), 120)),
        "blurry": jpeg(np.tile(np.linspace(0, 255, 64), (64, 1))[..., None].repeat(3, 2)),
        None: jpeg(textured),
    }
    for reason, img in cases.items():
        sc = st.score(sample("k", "x", img))
        assert st.decide(sc) == reason, (reason, sc)


def test_text_filter_reasons() -> None:
    st = build_stage("text_filter", {"min_words": 3, "max_dup_ngram_frac": 0.3, "max_nonprintable_frac": 0.05,
                                      "scripts": ["Latin"], "drop_boilerplate": True})
    cases = {
        "too_few_words": "two words",
        "repetitive": "buy now cheap " * 10,
        "garbage_characters": "a normal caption\x00\x01\x02\x03\x04\x05",
        "wrong_script": "это подпись к картинке на русском языке",
        "boilerplate": "photo of a dog, all rights reserved",
        None: "a brown dog runs on the beach at sunset",
    }
    for reason, text in cases.items():
        assert st.decide(st.score(sample("k", text))) == reason, (reason, st.score(sample("k", text)))


def test_dedupe_image_finds_every_pair_within_the_threshold() -> None:
    """Multi-index hashing must find exactly the pairs brute force finds (recall 1.0)."""
    st = build_stage("dedupe_image", {"max_hamming": 6})
    rng = np.random.default_rng(3)
    base = rng.integers(0, 2**63, 300, dtype=np.int64).astype(np.uint64)
    noisy = base.copy()
    for i in range(len(noisy)):  # flip 0..8 random bits
        for b in rng.choice(64, int(rng.integers(0, 9)), replace=False):
            noisy[i] ^= np.uint64(1) << np.uint64(int(b))
    sigs = [int(x) for x in np.concatenate([base, noisy])]
    records = [r for i, s in enumerate(sigs) for r in st.band_records(i, s)]
    found = find_pairs(st, records)
    brute = {(i, j) for i in range(len(sigs)) for j in range(i + 1, len(sigs)) if bin(sigs[i] ^ sigs[j]).count("1") <= 6}
    assert found == brute and len(brute) > 200


def test_dedupe_text_verifies_by_exact_jaccard() -> None:
    st = build_stage("dedupe_text", {"threshold": 0.8})
    words = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "near", "the", "river", "bank", "today", "again"]
    a = " ".join(words)
    b = " ".join(words[:-1] + ["tomorrow"])  # one word changed at the end
    c = " ".join(reversed(words))
    sa, sb, sc = st.signatures([sample("a", a), sample("b", b), sample("c", c)])
    x, y = set(np.frombuffer(sa[0], np.uint32)), set(np.frombuffer(sb[0], np.uint32))
    assert st.verify(sa, sb) == (len(x & y) / len(x | y) >= 0.8)
    assert not st.verify(sa, sc)
    assert st.signature(sample("e", "!!!")) is None  # no words: never a duplicate


def test_render_shapes_reencoded_is_a_near_duplicate() -> None:
    st = build_stage("dedupe_image", {"max_hamming": 6})
    im = render_shapes(5, 1, (320, 240))
    arr = np.asarray(Image.open(io.BytesIO(im.jpeg)))
    again = jpeg(arr, quality=40)
    half = io.BytesIO()
    Image.fromarray(arr).resize((160, 120)).save(half, "JPEG", quality=85)
    s0, s1, s2 = (st.signature(sample(k, "x", b)) for k, b in (("a", im.jpeg), ("b", again), ("c", half.getvalue())))
    assert st.verify(s0, s1) and st.verify(s0, s2)

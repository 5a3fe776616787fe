"""Measuring near-duplicate detection against brute force, on data with planted duplicates.

``text_quality`` writes documents from a word list plus copies with small edits (a few words
replaced, inserted or deleted) and compares the pairs ``dedupe_text`` finds with every pair
whose exact Jaccard similarity of shingles is at least the threshold. ``image_quality``
renders images, makes copies re-encoded at other JPEG qualities, resized (down to 0.5x),
cropped a little and recoloured slightly, and reports per transformation how many copies land
within the Hamming threshold of their original (what pHash can see), and whether the multi-
index search finds exactly the brute-force pairs (what our search adds or loses: nothing).
Used by ``tests/pipelines/test_dedupe_quality.py`` and ``benchmarks/pipelines.py``.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from datalake.sample import Media, MediaPart, Sample, Source, TextPart
from pipelines.dedupe_core import UnionFind, find_pairs
from pipelines.stage import build_stage

__all__ = ["text_quality", "image_quality", "edited_texts", "components"]


def components(pairs: set[tuple[int, int]], n: int) -> list[int]:
    """The cluster root of each of ``n`` items (identical signatures are linked as a star, so
    two searches agree on clusters, not necessarily on every pair)."""
    uf = UnionFind()
    for a, b in pairs:
        uf.union(a, b)
    return [uf.find(i) for i in range(n)]


def edited_texts(n_docs: int, n_dups: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(5000)]
    docs = [" ".join(rng.choice(vocab, int(rng.integers(30, 80)))) for _ in range(n_docs)]
    for _ in range(n_dups):
        words = docs[int(rng.integers(0, n_docs))].split()
        for _ in range(int(rng.integers(1, 4))):
            op, pos = rng.integers(0, 3), int(rng.integers(0, len(words)))
            if op == 0:
                words[pos] = str(rng.choice(vocab))
            elif op == 1:
                words.insert(pos, str(rng.choice(vocab)))
            elif len(words) > 5:
                del words[pos]
        docs.append(" ".join(words))
    return docs


def text_quality(n_docs: int = 2000, n_dups: int = 400, threshold: float = 0.8, seed: int = 0) -> dict[str, Any]:
    st = build_stage("dedupe_text", {"threshold": threshold})
    texts = edited_texts(n_docs, n_dups, seed)
    samples = [Sample(key=f"d{i}", kind="text", source=Source("q://"), content=(TextPart(t),)) for i, t in enumerate(texts)]
    sigs = st.signatures(samples)
    found = find_pairs(st, [r for i, s in enumerate(sigs) if s is not None for r in st.band_records(i, s)])
    sets = [set(np.frombuffer(s[0], np.uint32).tolist()) for s in sigs]
    truth = set()
    for i in range(len(sets)):  # brute force: every pair, exact Jaccard
        for j in range(i + 1, len(sets)):
            inter = len(sets[i] & sets[j])
            if inter and inter / (len(sets[i]) + len(sets[j]) - inter) >= threshold:
                truth.add((i, j))
    # a true pair is recalled when both ends end up in one cluster; a found pair is precise
    # when it really is at or above the threshold
    roots = components(found, len(texts))
    recalled = sum(roots[i] == roots[j] for i, j in truth)
    precise = len(found & truth) + sum(1 for i, j in found - truth if sets[i] == sets[j])
    return {"docs": len(texts), "true_pairs": len(truth), "found_pairs": len(found),
            "precision": precise / len(found) if found else 1.0, "recall": recalled / len(truth) if truth else 1.0}


def _jpeg(im: Any, quality: int) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def image_quality(n: int = 200, max_hamming: int = 6, seed: int = 0) -> dict[str, Any]:
    from PIL import Image, ImageEnhance

    from synth.shapes import render_shapes

    st = build_stage("dedupe_image", {"max_hamming": max_hamming})
    rng = np.random.default_rng(seed)
    transforms = {
        "re-encoded q40": lambda im: _jpeg(im, 40),
        "re-encoded q70": lambda im: _jpeg(im, 70),
        "resized 0.75x": lambda im: _jpeg(im.resize((im.width * 3 // 4, im.height * 3 // 4)), 85),
        "resized 0.5x": lambda im: _jpeg(im.resize((im.width // 2, im.height // 2)), 85),
        "cropped 5%": lambda im: _jpeg(im.crop((im.width // 40, im.height // 40, im.width - im.width // 40,
                                                im.height - im.height // 40)), 85),
        "recoloured": lambda im: _jpeg(ImageEnhance.Color(ImageEnhance.Brightness(im).enhance(1.08)).enhance(1.15), 85),
    }

    def sample(key: str, data: bytes) -> Sample:
        w, h = Image.open(io.BytesIO(data)).size
        return Sample(key=key, kind="caption", source=Source("q://"), media=(Media("0.jpg", "image/jpeg", w, h),),
                      content=(MediaPart(0), TextPart("x")), blobs={"0.jpg": data})

    originals = [render_shapes(seed, i, (320, 240), noise=float(rng.uniform(5, 25))) for i in range(n)]
    base = [st.signature(sample(f"o{i}", im.jpeg)) for i, im in enumerate(originals)]
    per: dict[str, float] = {}
    sigs = list(base)
    for name, fn in transforms.items():
        got = [st.signature(sample(f"t{len(per)}-{i}", fn(Image.open(io.BytesIO(im.jpeg)).convert("RGB"))))
               for i, im in enumerate(originals)]
        per[name] = float(np.mean([bin(a ^ b).count("1") <= max_hamming for a, b in zip(base, got, strict=True)]))
        sigs.extend(got)
    found = find_pairs(st, [r for i, s in enumerate(sigs) for r in st.band_records(i, s)])
    arr = np.array(sigs, dtype=np.uint64)
    x = arr[:, None] ^ arr[None, :]
    pop = np.bitwise_count(x) if hasattr(np, "bitwise_count") else np.vectorize(lambda v: bin(int(v)).count("1"))(x)
    ii, jj = np.nonzero(np.triu(pop <= max_hamming, k=1))
    truth = set(zip(ii.tolist(), jj.tolist(), strict=True))
    return {"images": len(sigs), "recall_by_transform": per, "true_pairs": len(truth),
            "clusters_equal_brute_force": components(found, len(sigs)) == components(truth, len(sigs))}

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


def edited_texts(n_docs: int, n_dups: int, seed: int = 0, max_edit_frac: float = 0.0) -> list[str]:
    """Documents plus edited copies: 1-3 word edits each, or with ``max_edit_frac`` up to that
    share of the words (similarities spread down to ~0, so recall is seen *at* a threshold)."""
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(5000)]
    docs = [" ".join(rng.choice(vocab, int(rng.integers(30, 80)))) for _ in range(n_docs)]
    for _ in range(n_dups):
        words = docs[int(rng.integers(0, n_docs))].split()
        edits = int(rng.integers(1, max(2, int(max_edit_frac * len(words)) + 1))) if max_edit_frac else \
            int(rng.integers(1, 4))
        for _ in range(edits):
            op, pos = rng.integers(0, 3), int(rng.integers(0, len(words)))
            if op == 0:
                words[pos] = str(rng.choice(vocab))
            elif op == 1:
                words.insert(pos, str(rng.choice(vocab)))
            elif len(words) > 5:
                del words[pos]
        docs.append(" ".join(words))
    return docs


def text_quality(n_docs: int = 2000, n_dups: int = 400, threshold: float = 0.8, seed: int = 0,
                 max_edit_frac: float = 0.0) -> dict[str, Any]:
    st = build_stage("dedupe_text", {"threshold": threshold})
    texts = edited_texts(n_docs, n_dups, seed, max_edit_frac)
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
    near = [(i, j) for i, j in truth if _jac(sets[i], sets[j]) < threshold + 0.1]
    return {"docs": len(texts), "true_pairs": len(truth), "found_pairs": len(found),
            "pairs_near_threshold": len(near),
            "recall_near_threshold": sum(roots[i] == roots[j] for i, j in near) / len(near) if near else 1.0,
            "precision": precise / len(found) if found else 1.0, "recall": recalled / len(truth) if truth else 1.0}


def _jac(a: set[int], b: set[int]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


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
        per[name] = float(np.mean([bin(a[0] ^ b[0]).count("1") <= max_hamming for a, b in zip(base, got, strict=True)]))
        sigs.extend(got)
    found = find_pairs(st, [r for i, s in enumerate(sigs) for r in st.band_records(i, s)])
    arr = np.array([s[0] for s in sigs], dtype=np.uint64)
    x = arr[:, None] ^ arr[None, :]
    pop = np.bitwise_count(x) if hasattr(np, "bitwise_count") else np.vectorize(lambda v: bin(int(v)).count("1"))(x)
    ii, jj = np.nonzero(np.triu(pop <= max_hamming, k=1))
    truth = {(i, j) for i, j in zip(ii.tolist(), jj.tolist(), strict=True) if st.verify(sigs[i], sigs[j])}
    return {"images": len(sigs), "recall_by_transform": per, "true_pairs": len(truth),
            "clusters_equal_brute_force": components(found, len(sigs)) == components(truth, len(sigs))}


IMAGE_TRANSFORMS = {
    "re-encoded q40": lambda im: _jpeg(im, 40),
    "re-encoded q70": lambda im: _jpeg(im, 70),
    "resized 0.75x": lambda im: _jpeg(im.resize((im.width * 3 // 4, im.height * 3 // 4)), 85),
    "resized 0.5x": lambda im: _jpeg(im.resize((im.width // 2, im.height // 2)), 85),
    "cropped 3%": lambda im: _jpeg(im.crop((im.width * 3 // 200, im.height * 3 // 200, im.width - im.width * 3 // 200,
                                            im.height - im.height * 3 // 200)), 85),
    "recoloured": lambda im: _recolour(im),
}


def _recolour(im: Any) -> bytes:
    from PIL import ImageEnhance

    return _jpeg(ImageEnhance.Color(ImageEnhance.Brightness(im).enhance(1.08)).enhance(1.15), 85)


def tricolour_flags(n: int = 60, size: tuple[int, int] = (300, 200), seed: int = 0) -> list[bytes]:
    """Different flags of one layout (three stripes), PNG: a classic false-positive family."""
    from itertools import permutations

    from PIL import Image, ImageDraw

    palette = [(206, 17, 38), (0, 122, 61), (0, 56, 147), (255, 255, 255), (252, 209, 22), (0, 0, 0),
               (255, 130, 0), (0, 155, 200)]
    combos = [c for c in permutations(palette, 3)]
    rng = np.random.default_rng(seed)
    out = []
    for k in rng.choice(len(combos), n, replace=False):
        cols = combos[int(k)]
        im = Image.new("RGB", size)
        d = ImageDraw.Draw(im)
        vertical = int(k) % 2 == 0
        for j, c in enumerate(cols):
            if vertical:
                d.rectangle((j * size[0] // 3, 0, (j + 1) * size[0] // 3, size[1]), fill=c)
            else:
                d.rectangle((0, j * size[1] // 3, size[0], (j + 1) * size[1] // 3), fill=c)
        buf = io.BytesIO()
        im.save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def image_families_quality(originals: list[bytes], lookalikes: dict[str, list[bytes]], params: dict[str, Any],
                           transitive: bool = False) -> dict[str, Any]:
    """Near-duplicate clusters against planted ground truth.

    Each original photo gets the copies of ``IMAGE_TRANSFORMS`` (one family each: all of them
    must land in the original's cluster); every image of ``lookalikes`` (different flags, icons,
    pages of one manual ...) is a family of its own (none may join another). Pair precision: of
    the pairs of images the clusters put together, the share from one family; recall per
    transform: the share of copies clustered with their original. ``transitive=True`` measures
    connected components instead of stars (the clustering before stars)."""
    from PIL import Image

    from pipelines.dedupe_core import clusters

    st = build_stage("dedupe_image", params)
    datas: list[bytes] = []
    family: list[int] = []
    kind: list[str] = []
    for f, data in enumerate(originals):
        im = Image.open(io.BytesIO(data)).convert("RGB")
        datas.append(data)
        family.append(f)
        kind.append("original")
        for name, fn in IMAGE_TRANSFORMS.items():
            datas.append(fn(im))
            family.append(f)
            kind.append(name)
    for group, items in lookalikes.items():
        for data in items:
            datas.append(data)
            family.append(len(set(family)) + 1000)
            kind.append(group)

    def sample(i: int, data: bytes) -> Sample:
        w, h = Image.open(io.BytesIO(data)).size
        return Sample(key=f"i{i}", kind="caption", source=Source("q://"), media=(Media("0.png", "image/png", w, h),),
                      content=(MediaPart(0), TextPart("x")), blobs={"0.png": data})

    sigs = [st.signature(sample(i, d)) for i, d in enumerate(datas)]
    pairs = find_pairs(st, [r for i, s in enumerate(sigs) for r in st.band_records(i, s)])
    rank = {i: (0 if kind[i] == "original" else 1, i) for i in range(len(datas))}
    rep = {i: i for i in range(len(datas))}
    rep.update(clusters(pairs, rank, transitive=transitive))
    members: dict[int, list[int]] = {}
    for i, r in rep.items():
        members.setdefault(r, []).append(i)
    together = same = 0
    false_groups: dict[str, int] = {}
    for ms in members.values():
        for a in range(len(ms)):
            for b in range(a + 1, len(ms)):
                together += 1
                if family[ms[a]] == family[ms[b]]:
                    same += 1
                else:
                    for k in {kind[ms[a]], kind[ms[b]]}:
                        false_groups[k] = false_groups.get(k, 0) + 1
    orig = {family[i]: i for i in range(len(datas)) if kind[i] == "original"}
    recall = {name: float(np.mean([rep[i] == rep[orig[family[i]]] for i in range(len(datas)) if kind[i] == name]))
              for name in IMAGE_TRANSFORMS}
    return {"images": len(datas), "pairs_clustered": together,
            "pair_precision": same / together if together else 1.0, "recall_by_transform": recall,
            "false_pairs_by_kind": dict(sorted(false_groups.items())), "largest_cluster": max(map(len, members.values()))}

"""Deduplication stages: exact (sha256), near-duplicate images (pHash + multi-index hashing),
near-duplicate text (MinHash + LSH, verified by exact Jaccard).

None of them scans all pairs. Each emits band records; the runner groups records by band on
whatever engine it uses; ``verify`` checks the candidate pairs in each group; union-find joins
verified pairs into clusters and each cluster keeps its best sample (largest image, then
lowest key). The set of verified pairs does not depend on the engine or on partitioning, so
the three runners agree exactly.

``dedupe_image``: a 64-bit pHash (``imagehash``) split into ``m = 4`` 16-bit substrings. Two
hashes within Hamming distance ``h`` agree within ``h // m`` bits on at least one substring
(pigeonhole), so probing each substring's neighbours within that radius finds *every* pair
within ``h`` -- recall 1.0 against brute force, at a few percent of the pairs.

``dedupe_text``: word 3-shingles of normalised text (``pipelines.text.words``: CJK characters
are words, so Chinese shingles are character 3-grams), a 128-permutation MinHash
(``datasketch``, bulk hashing) cut into bands derived from the threshold (``lsh_bands``: 25
bands of 5 rows at 0.8, 64 of 2 at 0.5): a pair at the threshold becomes a candidate with
probability >= 0.999. Candidates are verified by exact Jaccard of the shingle sets, so
precision is exact. Caption pairs are left to the image dedupe unless ``captions: true``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from datalake.sample import Sample
from pipelines.stage import DedupeStage, Record, Reject, register
from pipelines.text import words as split_words

_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)


def normalise_text(text: str) -> str:
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def lsh_bands(threshold: float, perms: int = 128, target: float = 0.999) -> tuple[int, int]:
    """(bands, rows) for MinHash LSH: the most rows per band (fewest candidate pairs) for which
    a pair exactly at ``threshold`` still becomes a candidate with probability >= ``target``
    (1 - (1 - t^r)^b); 0.8 -> 25 x 5, 0.5 -> 64 x 2. Candidates are verified by exact Jaccard,
    so extra candidates cost time, never precision."""
    best = (perms, 1)
    for r in range(1, perms + 1):
        b = perms // r
        if 1 - (1 - threshold ** r) ** b >= target:
            best = (b, r)
    return best


@register
class DedupeExact(DedupeStage):
    name = "dedupe_exact"
    transitive = True

    @dataclass(frozen=True)
    class Config:
        by: str = "auto"  # media | text | both | auto (media when the sample has media, else text)

        def __post_init__(self) -> None:
            if self.by not in ("media", "text", "both", "auto"):
                raise ValueError("by must be media, text, both or auto")

    def signature(self, sample: Sample) -> str | None:
        by = self.config.by if self.config.by != "auto" else ("media" if sample.media else "text")
        h = hashlib.sha256()
        if by in ("media", "both"):
            for m in sample.media:
                h.update(hashlib.sha256(bytes(sample.blobs[m.name])).digest())
        if by in ("text", "both"):
            h.update(normalise_text(sample.text()).encode())
        return f"{by}:{h.hexdigest()}"

    def band_records(self, item: int, sig: Any) -> Iterable[Record]:
        yield Record(sig, item, "key", sig)

    def verify(self, a: Any, b: Any) -> bool:
        return bool(a == b)


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    return np.array([bin(int(v)).count("1") for v in x.ravel()]).reshape(x.shape)


def _phash(sig: Any) -> int:
    return int(sig[0]) if isinstance(sig, tuple) else int(sig)


def _on_white(im: Any) -> Any:
    from PIL import Image

    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return im.convert("RGB")


def colour_layout(im: Any) -> bytes:
    """A 4x4 grid of mean colours (YCbCr, transparency composited on white): 48 bytes."""
    from PIL import Image

    return _on_white(im).resize((4, 4), Image.Resampling.BOX).convert("YCbCr").tobytes()


def colour_distance(a: bytes, b: bytes) -> float:
    """Mean over the 16 cells of the chroma distance plus a quarter of the luma difference
    (0-255 units): a brightness or saturation edit moves it a little, a red vs a green flag a lot."""
    x = np.frombuffer(a, np.uint8).reshape(16, 3).astype(np.float32)
    y = np.frombuffer(b, np.uint8).reshape(16, 3).astype(np.float32)
    d = x - y
    return float(np.mean(np.hypot(d[:, 1], d[:, 2]) + 0.25 * np.abs(d[:, 0])))


@register
class DedupeImage(DedupeStage):
    """Near-duplicate images: pHash within ``max_hamming`` bits *and* a colour layout within
    ``max_colour_distance`` (pHash sees only grey structure: a red and a green tricolour share
    it). Clusters are stars around a representative (see ``dedupe_core.clusters``), so no member
    is further than ``max_hamming`` from the image it is dropped for: chains of near pairs never
    join different images."""

    name = "dedupe_image"
    SUBSTRINGS = 4

    @dataclass(frozen=True)
    class Config:
        max_hamming: int = 6
        image: str = "first"  # which image of a multi-image sample is compared
        #: colour layout distance (0-255 units; None: grey pHash only)
        max_colour_distance: float | None = 16.0

        def __post_init__(self) -> None:
            if not 0 <= self.max_hamming <= 24:
                raise ValueError("max_hamming must be between 0 and 24 (of 64 bits)")
            if self.image != "first":
                raise ValueError("image must be 'first'")
            if self.max_colour_distance is not None and self.max_colour_distance < 0:
                raise ValueError("max_colour_distance must be >= 0 (or null to compare grey structure only)")

    def signature(self, sample: Sample) -> tuple[int, bytes] | None:
        import imagehash
        from PIL import Image

        m = next((m for m in sample.media if m.mime.startswith("image/")), None)
        if m is None:
            return None
        try:
            with Image.open(io.BytesIO(bytes(sample.blobs[m.name]))) as im:
                im.draft("RGB", (256, 256))
                im = _on_white(im)  # transparent pixels: white, not whatever RGB they hide
                return int(str(imagehash.phash(im)), 16), colour_layout(im)
        except Exception as exc:  # noqa: BLE001
            raise Reject("undecodable_image", f"{m.name}: {exc}") from None

    def band_records(self, item: int, sig: Any) -> Iterable[Record]:
        radius = self.config.max_hamming // self.SUBSTRINGS
        bits = 64 // self.SUBSTRINGS
        ph = _phash(sig)
        for j in range(self.SUBSTRINGS):
            sub = (ph >> (bits * j)) & ((1 << bits) - 1)
            yield Record(f"{j}:{sub}", item, "key", sig)
            for probe in _neighbours(sub, bits, radius):
                yield Record(f"{j}:{probe}", item, "probe", sig)

    def distance(self, a: Any, b: Any) -> float:
        return float(bin(_phash(a) ^ _phash(b)).count("1"))

    def verify_block(self, xs: list[Any], ys: list[Any] | None) -> list[tuple[int, int]]:
        """Verified pairs (i, j) between ``xs`` and ``ys`` (or within ``xs``, i < j), with numpy
        popcounts in row blocks: a band bucket that real images crowd (white backgrounds, pages
        of one manual share a 16-bit part) costs milliseconds, not a Python loop over its pairs."""
        a = np.array([_phash(x) for x in xs], dtype=np.uint64)
        b = a if ys is None else np.array([_phash(y) for y in ys], dtype=np.uint64)
        out: list[tuple[int, int]] = []
        for i0 in range(0, len(a), 1024):
            d = _popcount(a[i0:i0 + 1024, None] ^ b[None, :])
            ii, jj = np.nonzero(d <= self.config.max_hamming)
            for i, j in zip((ii + i0).tolist(), jj.tolist(), strict=True):
                if (ys is not None or i < j) and self._colour_ok(xs[i], (ys or xs)[j]):
                    out.append((i, j))
        return out

    def _colour_ok(self, a: Any, b: Any) -> bool:
        limit = self.config.max_colour_distance
        if limit is None or not (isinstance(a, tuple) and isinstance(b, tuple)):
            return True  # signatures of an older version carry no colour
        return colour_distance(a[1], b[1]) <= limit

    def verify(self, a: Any, b: Any) -> bool:
        if bin(_phash(a) ^ _phash(b)).count("1") > self.config.max_hamming:
            return False
        return self._colour_ok(a, b)


def _neighbours(value: int, bits: int, radius: int) -> Iterable[int]:
    """All values within Hamming distance 1..radius of ``value`` (radius <= 2 in practice)."""
    from itertools import combinations

    for r in range(1, radius + 1):
        for flips in combinations(range(bits), r):
            v = value
            for f in flips:
                v ^= 1 << f
            yield v


@register
class DedupeText(DedupeStage):
    name = "dedupe_text"
    PERMS, SEED = 128, 1

    @dataclass(frozen=True)
    class Config:
        threshold: float = 0.8
        shingle: int = 3
        #: caption pairs are deduplicated by their image (dedupe_image); set true to also drop
        #: captions whose *text* repeats (different images with one caption would go too)
        captions: bool = False

        def __post_init__(self) -> None:
            if not 0 < self.threshold <= 1:
                raise ValueError("threshold is a Jaccard similarity in (0, 1]")
            if self.shingle < 1:
                raise ValueError("shingle must be >= 1")

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.BANDS, self.ROWS = lsh_bands(config.threshold, self.PERMS)

    def describe(self) -> dict[str, Any]:
        return {self.name: {**dataclasses.asdict(self.config), "bands": self.BANDS, "rows": self.ROWS}}

    def shingles(self, text: str) -> np.ndarray:
        words = split_words(text)
        n = self.config.shingle
        grams = {" ".join(words[i:i + n]) for i in range(max(1, len(words) - n + 1))} if words else set()
        return np.array(sorted(int.from_bytes(hashlib.blake2b(g.encode(), digest_size=4).digest(), "little")
                               for g in grams), dtype=np.uint32)

    def signature(self, sample: Sample) -> tuple[bytes, tuple[int, ...]] | None:
        return self.signatures([sample])[0]

    def signatures(self, samples: list[Sample]) -> list[Any]:
        sets = [self.shingles(s.text()) if self.config.captions or s.kind != "caption" else np.zeros(0, np.uint32)
                for s in samples]
        nonempty = [i for i, sh in enumerate(sets) if sh.size]
        bands = self.band_hashes([sets[i] for i in nonempty]) if nonempty else []
        out: list[Any] = [None] * len(samples)
        for i, b in zip(nonempty, bands, strict=True):
            out[i] = (sets[i].tobytes(), tuple(b))
        return out

    def band_hashes(self, shingle_sets: list[np.ndarray]) -> list[list[int]]:
        """MinHash (datasketch bulk) of many shingle sets, then one hash per band."""
        from datasketch import MinHash

        mhs = MinHash.bulk([[int(x).to_bytes(4, "little") for x in s] for s in shingle_sets], num_perm=self.PERMS,
                           seed=self.SEED)
        out = []
        for mh in mhs:
            hv = np.asarray(mh.hashvalues, dtype=np.uint64)
            out.append([int.from_bytes(hashlib.blake2b(hv[b * self.ROWS:(b + 1) * self.ROWS].tobytes(),
                                                       digest_size=8).digest(), "little")
                        for b in range(self.BANDS)])
        return out

    def band_records(self, item: int, sig: Any) -> Iterable[Record]:
        for b, h in enumerate(sig[1]):
            yield Record(f"{b}:{h}", item, "key", sig)

    def verify(self, a: Any, b: Any) -> bool:
        x, y = np.frombuffer(a[0], dtype=np.uint32), np.frombuffer(b[0], dtype=np.uint32)
        inter = np.intersect1d(x, y, assume_unique=True).size
        return inter / (x.size + y.size - inter) >= self.config.threshold

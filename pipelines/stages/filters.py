"""Quality filters: score into ``meta``, then keep or drop with a named reason.

``image_filter`` scores every image (width, height, aspect, bytes, blur as the variance of
the Laplacian of a 256-px grey thumbnail, and pixel standard deviation for near-uniform
images; images with transparency are scored composited on white and on black) and judges a
one-image sample by it; a document with several images loses only the images that fail. ``text_filter`` scores the sample's text:
words, characters, the fraction of characters in duplicated word 3-grams (Gopher's
repetition rule), non-printable characters, the share of letters in the allowed scripts, and
boilerplate phrases. Scores never depend on thresholds, so thresholds can be re-applied from
stored scores.
"""

from __future__ import annotations

import dataclasses
import io
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from datalake.sample import Sample
from pipelines.stage import FilterStage, Reject, register
from pipelines.text import words as split_words

BOILERPLATE = ("click here", "lorem ipsum", "all rights reserved", "cookie policy", "subscribe to our newsletter",
               "javascript is disabled", "404 not found", "image not available", "stock photo")


def _grey_views(im: Any) -> list[np.ndarray]:
    """Grey 256-px thumbnails to score: one for an opaque image; for an image with
    transparency, the image composited on white and on black (a stamp whose shape is only in
    its alpha channel is uniform in RGB, and near-uniform on neither background)."""
    from PIL import Image

    im.draft("L", (256, 256))
    has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
    if not has_alpha:
        im.thumbnail((256, 256))
        return [np.asarray(im.convert("L"), dtype=np.float32)]
    rgba = im.convert("RGBA")
    rgba.thumbnail((256, 256))
    views = []
    for bg in ((255, 255, 255, 255), (0, 0, 0, 255)):
        views.append(np.asarray(Image.alpha_composite(Image.new("RGBA", rgba.size, bg), rgba).convert("L"),
                                dtype=np.float32))
    return views


def _laplacian_var(g: np.ndarray) -> float:
    if min(g.shape) <= 2:
        return float(g.var())
    lap = g[1:-1, 1:-1] * -4 + g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:]
    return float(lap.var())


_LOWER_IS_WORSE = ("min_side", "bytes", "blur", "std")


@register
class ImageFilter(FilterStage):
    """Scores every image; a sample with one image is judged by it. A sample with several
    images (an interleaved document) loses the images that fail (recorded in
    ``meta.dropped_parts`` with the reason) and survives, unless it has no text and no image
    passes; ``per_image: sample`` judges such samples by their worst image instead."""

    name = "image_filter"

    @dataclass(frozen=True)
    class Config:
        min_side: int = 0
        max_side: int | None = None
        max_aspect: float | None = None
        min_bytes: int = 0
        max_bytes: int | None = None
        min_blur: float | None = None
        min_std: float | None = None
        per_image: str = "drop_image"

        def __post_init__(self) -> None:
            if self.per_image not in ("drop_image", "sample"):
                raise ValueError("per_image must be drop_image (drop failing images of multi-image samples) or "
                                 "sample (judge the sample by its worst image)")

    def score(self, sample: Sample) -> dict[str, Any]:
        from PIL import Image

        images = [(i, m) for i, m in enumerate(sample.media) if m.mime.startswith("image/")]
        if not images:
            return {"images": 0}
        per = []
        for i, m in images:
            data = bytes(sample.blobs[m.name])
            try:
                with Image.open(io.BytesIO(data)) as im:
                    views = _grey_views(im)
            except Exception as exc:  # noqa: BLE001
                raise Reject("undecodable_image", f"{m.name}: {exc}") from None
            per.append({"media": i, "min_side": min(m.width, m.height), "max_side": max(m.width, m.height),
                        "aspect": round(max(m.width, m.height) / max(1, min(m.width, m.height)), 4),
                        "bytes": len(data), "blur": round(max(_laplacian_var(g) for g in views), 3),
                        "std": round(max(float(g.std()) for g in views), 3)})
        worst: dict[str, Any] = {"images": len(images), "has_text": bool(sample.text().strip())}
        for p in per:
            for k, v in p.items():
                if k == "media":
                    continue
                if k not in worst or (v < worst[k] if k in _LOWER_IS_WORSE else v > worst[k]):
                    worst[k] = v
        if len(per) > 1 or sample.kind == "interleaved":  # a document loses the image, not itself
            worst["per_image"] = per
        return worst

    def _reason(self, s: dict[str, Any]) -> str | None:
        c = self.config
        if s["min_side"] < c.min_side:
            return "too_small"
        if c.max_side is not None and s["max_side"] > c.max_side:
            return "too_large"
        if c.max_aspect is not None and s["aspect"] > c.max_aspect:
            return "extreme_aspect"
        if s["bytes"] < c.min_bytes:
            return "file_too_small"
        if c.max_bytes is not None and s["bytes"] > c.max_bytes:
            return "file_too_large"
        if c.min_std is not None and s["std"] < c.min_std:
            return "near_uniform"
        if c.min_blur is not None and s["blur"] < c.min_blur:
            return "blurry"
        return None

    def _per_image(self, s: dict[str, Any]) -> list[tuple[int, str | None]] | None:
        per = s.get("per_image")
        if self.config.per_image != "drop_image" or not per:
            return None
        return [(int(p["media"]), self._reason(p)) for p in per]

    def decide(self, s: dict[str, Any]) -> str | None:
        if not s.get("images"):
            return None
        per = self._per_image(s)
        if per is None:
            return self._reason(s)
        reasons = [r for _, r in per]
        if all(reasons) and not s.get("has_text", True):
            return reasons[0]
        return None

    def prune(self, sample: Sample, scores: dict[str, Any]) -> Sample:
        from datalake.sample import drop_media

        per = self._per_image(scores)
        drop = {i: r for i, r in (per or ()) if r}
        if not drop:
            return sample
        meta = dict(sample.meta)
        meta["dropped_parts"] = [*meta.get("dropped_parts", ()),
                                 *({"stage": self.name, "media": sample.media[i].name, "reason": r}
                                   for i, r in sorted(drop.items()))]
        return dataclasses.replace(drop_media(sample, set(drop)), meta=meta)



def script_of(ch: str) -> str | None:
    if not ch.isalpha():
        return None
    name = unicodedata.name(ch, "")
    for script in ("LATIN", "CJK", "HIRAGANA", "KATAKANA", "HANGUL", "CYRILLIC", "GREEK", "ARABIC", "HEBREW",
                   "DEVANAGARI", "THAI"):
        if name.startswith(script):
            return {"HIRAGANA": "CJK", "KATAKANA": "CJK", "HANGUL": "CJK"}.get(script, script).title()
    return "Other"


@register
class TextFilter(FilterStage):
    name = "text_filter"

    @dataclass(frozen=True)
    class Config:
        min_words: int = 0
        max_words: int | None = None
        min_chars: int = 0
        max_chars: int | None = None
        max_dup_ngram_frac: float | None = None
        max_nonprintable_frac: float | None = None
        scripts: tuple[str, ...] = ()
        min_script_frac: float = 0.8
        drop_boilerplate: bool = False

    def score(self, sample: Sample) -> dict[str, Any]:
        text = sample.text()
        words = split_words(text)
        grams = [" ".join(words[i:i + 3]) for i in range(max(0, len(words) - 2))]
        counts = Counter(grams)
        dup_chars = sum(len(g) * n for g, n in counts.items() if n > 1)
        total_chars = sum(len(g) for g in grams) or 1
        printable = sum(1 for ch in text if ch.isprintable() or ch in "\n\t")
        scripts = Counter(s for s in map(script_of, text) if s)
        letters = sum(scripts.values())
        low = text.lower()
        return {"words": len(words), "chars": len(text), "dup_ngram_frac": round(dup_chars / total_chars, 4),
                "nonprintable_frac": round(1 - printable / len(text), 4) if text else 0.0,
                "scripts": {k: round(v / letters, 4) for k, v in sorted(scripts.items())} if letters else {},
                "boilerplate": [b for b in BOILERPLATE if b in low]}

    def decide(self, s: dict[str, Any]) -> str | None:
        c = self.config
        if s["words"] < c.min_words:
            return "too_few_words"
        if c.max_words is not None and s["words"] > c.max_words:
            return "too_many_words"
        if s["chars"] < c.min_chars:
            return "too_short"
        if c.max_chars is not None and s["chars"] > c.max_chars:
            return "too_long"
        if c.max_dup_ngram_frac is not None and s["dup_ngram_frac"] > c.max_dup_ngram_frac:
            return "repetitive"
        if c.max_nonprintable_frac is not None and s["nonprintable_frac"] > c.max_nonprintable_frac:
            return "garbage_characters"
        if c.scripts and s["scripts"] and sum(s["scripts"].get(x, 0.0) for x in c.scripts) < c.min_script_frac:
            return "wrong_script"
        if c.drop_boilerplate and s["boilerplate"]:
            return "boilerplate"
        return None

"""Quality filters: score into ``meta``, then keep or drop with a named reason.

``image_filter`` scores every image (width, height, aspect, bytes, blur as the variance of
the Laplacian of a 256-px grey thumbnail, and pixel standard deviation for near-uniform
images) and judges a sample by its worst image. ``text_filter`` scores the sample's text:
words, characters, the fraction of characters in duplicated word 3-grams (Gopher's
repetition rule), non-printable characters, the share of letters in the allowed scripts, and
boilerplate phrases. Scores never depend on thresholds, so thresholds can be re-applied from
stored scores.
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from datalake.sample import Sample
from pipelines.stage import FilterStage, Reject, register

BOILERPLATE = ("click here", "lorem ipsum", "all rights reserved", "cookie policy", "subscribe to our newsletter",
               "javascript is disabled", "404 not found", "image not available", "stock photo")


@register
class ImageFilter(FilterStage):
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

    def score(self, sample: Sample) -> dict[str, Any]:
        from PIL import Image

        images = [m for m in sample.media if m.mime.startswith("image/")]
        if not images:
            return {"images": 0}
        worst: dict[str, Any] = {"images": len(images)}
        for m in images:
            data = bytes(sample.blobs[m.name])
            try:
                with Image.open(io.BytesIO(data)) as im:
                    im.draft("L", (256, 256))
                    im.thumbnail((256, 256))
                    g = np.asarray(im.convert("L"), dtype=np.float32)
            except Exception as exc:  # noqa: BLE001
                raise Reject("undecodable_image", f"{m.name}: {exc}") from None
            lap = g[1:-1, 1:-1] * -4 + g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] if min(g.shape) > 2 else g
            s = {"min_side": min(m.width, m.height), "max_side": max(m.width, m.height),
                 "aspect": round(max(m.width, m.height) / min(m.width, m.height), 4), "bytes": len(data),
                 "blur": round(float(lap.var()), 3), "std": round(float(g.std()), 3)}
            for k, v in s.items():
                lower_is_worse = k in ("min_side", "bytes", "blur", "std")
                if k not in worst or (v < worst[k] if lower_is_worse else v > worst[k]):
                    worst[k] = v
        return worst

    def decide(self, s: dict[str, Any]) -> str | None:
        c = self.config
        if not s.get("images"):
            return None
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


_WORD = re.compile(r"\w+", re.UNICODE)


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
        words = _WORD.findall(text.lower())
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

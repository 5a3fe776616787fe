"""Augmentation that keeps coordinates and orientation correct.

``augment(image, annotations, policy, seed) -> (image, annotations)``: ``image`` is an HxWxC
uint8 array, ``annotations`` the datalake JSON shape (box ``xyxy``, point ``xy``, polygon
``points``, pixel coordinates of this image). ``policy`` is a dict or a built-in name:

- ``"default"``: resize to the pixel budget, random resized crop that keeps every annotation
  inside, horizontal flip (not for text-bearing annotations), small rotation, colour jitter,
  blur / noise / JPEG quality;
- ``"geometric"``: the geometric ops only (handy for tests and debugging);
- ``"none"``: only the resize to the budget.

The output size has sides that are multiples of ``patch * merge`` (14 x 2 = 28 by default,
the ViT patch grid after 2x2 pixel shuffle) and at most ``max_pixels`` pixels. Every
geometric op is one affine matrix; the image is warped once with their product and every
annotation is moved by the same matrix (``geometry``). An annotation pushed fully out of the
image comes back as ``None`` at its index, so text placeholders pointing at it can be handled,
never left dangling. Randomness comes only from ``seed`` (an int, or anything hashable such as
``(seed, dataset, key, epoch)``): same seed, same result. ``augment_with_params`` also returns
the parameters it drew (``hflip`` tells the caller to swap left/right words in the text).
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from loader.augment import geometry as G

__all__ = ["augment", "augment_with_params", "POLICIES", "resolve_policy", "swap_left_right", "TEXT_ROLES"]

TEXT_ROLES = {"ocr_line", "ocr_word", "ui_element", "text"}

POLICIES: dict[str, dict[str, Any]] = {
    # lr_swap (any policy): how text is mirrored with a horizontal flip -- see swap_left_right
    "none": {"max_pixels": 1_048_576, "patch": 28, "lr_swap": "spatial"},
    "geometric": {"max_pixels": 1_048_576, "patch": 28, "crop_p": 0.7, "crop_min_scale": 0.5, "hflip_p": 0.5,
                  "rotate_p": 0.5, "rotate_max": 10.0},
    "default": {"max_pixels": 1_048_576, "patch": 28, "crop_p": 0.5, "crop_min_scale": 0.6, "hflip_p": 0.5,
                "rotate_p": 0.3, "rotate_max": 8.0, "color_p": 0.8, "brightness": 0.2, "contrast": 0.2,
                "saturation": 0.2, "blur_p": 0.1, "noise_p": 0.1, "noise_std": 6.0, "jpeg_p": 0.2,
                "jpeg_quality": (40, 90)},
}
_KNOWN = {k for p in POLICIES.values() for k in p}


def resolve_policy(policy: str | dict[str, Any] | None) -> dict[str, Any]:
    if policy is None:
        return dict(POLICIES["none"])
    if isinstance(policy, str):
        if policy not in POLICIES:
            raise ValueError(f"unknown augmentation policy {policy!r}: use one of {sorted(POLICIES)} or a dict")
        return dict(POLICIES[policy])
    if not isinstance(policy, dict):
        raise TypeError(f"policy must be a name or a dict, got {type(policy).__name__}")
    unknown = sorted(set(policy) - _KNOWN)
    if unknown:
        raise ValueError(f"unknown augmentation parameter(s) {unknown}; known: {sorted(_KNOWN)}")
    return {**POLICIES["none"], **policy}


def _rng(seed: Any) -> np.random.Generator:
    if isinstance(seed, (int, np.integer)):
        return np.random.default_rng(int(seed))
    digest = hashlib.sha256(repr(seed).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def budget_size(w: int, h: int, max_pixels: int, patch: int) -> tuple[int, int]:
    """The output size: aspect kept, at most ``max_pixels``, sides multiples of ``patch``."""
    s = min(1.0, math.sqrt(max_pixels / (w * h)))
    ow = max(patch, int(w * s // patch) * patch)
    oh = max(patch, int(h * s // patch) * patch)
    while ow * oh > max_pixels and (ow > patch or oh > patch):
        if ow >= oh:
            ow -= patch
        else:
            oh -= patch
    return ow, oh


def _crop_box(rng: np.random.Generator, w: int, h: int, anns: list[dict[str, Any] | None], min_scale: float) -> list[float]:
    """A random crop (aspect kept) that contains every annotation of the image."""
    req = [0.0, 0.0, 0.0, 0.0]
    pts = []
    for a in anns:
        if a is None:
            continue
        if a.get("type") == "box":
            pts += [a["xyxy"][:2], a["xyxy"][2:]]
        elif a.get("type") == "point":
            pts.append(a["xy"])
        elif a.get("type") == "polygon":
            pts += a["points"]
    if pts:
        arr = np.array(pts, dtype=float)
        req = [arr[:, 0].min(), arr[:, 1].min(), arr[:, 0].max(), arr[:, 1].max()]
    s = rng.uniform(min_scale, 1.0)
    cw, ch = w * s, h * s
    if pts and (req[2] - req[0] > cw or req[3] - req[1] > ch):
        s = max((req[2] - req[0]) / w, (req[3] - req[1]) / h, min_scale)
        cw, ch = w * s, h * s
    lo_x, hi_x = (max(0.0, req[2] - cw), min(req[0], w - cw)) if pts else (0.0, w - cw)
    lo_y, hi_y = (max(0.0, req[3] - ch), min(req[1], h - ch)) if pts else (0.0, h - ch)
    x0 = rng.uniform(lo_x, max(lo_x, hi_x))
    y0 = rng.uniform(lo_y, max(lo_y, hi_y))
    return [x0, y0, x0 + cw, y0 + ch]


def augment_with_params(image: np.ndarray, annotations: list[dict[str, Any]], policy: str | dict[str, Any] | None,
                        seed: Any) -> tuple[np.ndarray, list[dict[str, Any] | None], dict[str, Any]]:
    if isinstance(image, Image.Image):  # the loader hands over decoded images without a copy
        pil_in = image if image.mode == "RGB" else image.convert("RGB")
        w, h = pil_in.size
    elif not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
        raise TypeError("image must be an HxWxC uint8 array")
    else:
        pil_in = None
        h, w = image.shape[:2]
    p = resolve_policy(policy)
    rng = _rng(seed)
    anns: list[dict[str, Any] | None] = [dict(a) for a in annotations]
    params: dict[str, Any] = {"input_size": [w, h]}
    m = G.identity()
    cw, ch = float(w), float(h)
    if rng.random() < p.get("crop_p", 0.0):
        box = _crop_box(rng, w, h, anns, p.get("crop_min_scale", 1.0))
        m = G.compose(m, G.translate(-box[0], -box[1]))
        cw, ch = box[2] - box[0], box[3] - box[1]
        params["crop"] = [round(v, 3) for v in box]
    ow, oh = budget_size(int(round(cw)), int(round(ch)), p["max_pixels"], p["patch"])
    m = G.compose(m, G.scale(ow / cw, oh / ch))
    text_bearing = any(a is not None and (a.get("role") in TEXT_ROLES or a.get("text")) for a in anns)
    if rng.random() < p.get("hflip_p", 0.0) and not text_bearing:
        m = G.compose(m, G.hflip(ow))
        params["hflip"] = True
    if rng.random() < p.get("rotate_p", 0.0):
        deg = float(rng.uniform(-p["rotate_max"], p["rotate_max"]))
        m = G.compose(m, G.rotate(deg, ow / 2, oh / 2))
        params["rotate"] = round(deg, 3)
    params["output_size"] = [ow, oh]
    pil = _warp(pil_in if pil_in is not None else Image.fromarray(image), m, ow, oh)
    anns = G.transform_annotations(anns, m, ow, oh, media=None)  # all given annotations are on this image
    out = _photometric(np.asarray(pil), p, rng, params)
    params["dropped"] = [i for i, a in enumerate(anns) if a is None]
    return out, anns, params


def _warp(im: Image.Image, m: np.ndarray, ow: int, oh: int) -> Image.Image:
    """The image under affine ``m``, output ``ow x oh``. Axis-aligned matrices (crop, scale,
    flip: the common case) take Pillow's separable ``resize`` with a source box, about 3x faster
    than a general affine warp; rotations take the warp."""
    a, b, tx, c, d, ty = m.ravel()
    if b == 0 and c == 0 and a != 0 and d != 0:
        xs = sorted(((0 - tx) / a, (ow - tx) / a))
        ys = sorted(((0 - ty) / d, (oh - ty) / d))
        out = im.resize((ow, oh), Image.Resampling.BILINEAR, box=(xs[0], ys[0], xs[1], ys[1]))
        if a < 0:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if d < 0:
            out = out.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        return out
    inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
    return im.transform((ow, oh), Image.Transform.AFFINE, data=tuple(inv.ravel()), resample=Image.Resampling.BILINEAR)


def _photometric(img: np.ndarray, p: dict[str, Any], rng: np.random.Generator, params: dict[str, Any]) -> np.ndarray:
    if rng.random() < p.get("color_p", 0.0):
        b = 1 + rng.uniform(-p["brightness"], p["brightness"])
        c = 1 + rng.uniform(-p["contrast"], p["contrast"])
        s = 1 + rng.uniform(-p["saturation"], p["saturation"])
        f = img.astype(np.float32) * b
        f = (f - f.mean()) * c + f.mean()
        grey = f.mean(axis=2, keepdims=True)
        f = grey + (f - grey) * s
        img = np.clip(f, 0, 255).astype(np.uint8)
        params["color"] = [round(b, 3), round(c, 3), round(s, 3)]
    if rng.random() < p.get("blur_p", 0.0):
        r = float(rng.uniform(0.3, 1.2))
        img = np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(r)))
        params["blur"] = round(r, 3)
    if rng.random() < p.get("noise_p", 0.0):
        img = np.clip(img + rng.normal(0, p["noise_std"], img.shape), 0, 255).astype(np.uint8)
        params["noise"] = p["noise_std"]
    if rng.random() < p.get("jpeg_p", 0.0):
        q = int(rng.integers(*p["jpeg_quality"]))
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=q)
        img = np.asarray(Image.open(buf).convert(Image.fromarray(img).mode))
        params["jpeg_quality"] = q
    return img


def augment(image: np.ndarray, annotations: list[dict[str, Any]], policy: str | dict[str, Any] | None = "default",
            seed: Any = 0) -> tuple[np.ndarray, list[dict[str, Any] | None]]:
    """Augment ``image`` and move ``annotations`` with it (see the module doc)."""
    out, anns, _ = augment_with_params(image, annotations, policy, seed)
    return out, anns


_SWAP = {"left": "right", "right": "left"}
_ZH_SWAP = {"左": "右", "右": "左"}
#: words before "left"/"right" that make it a direction or a side (not "he left the room")
_PRE = ("the", "a", "an", "to", "on", "at", "in", "into", "from", "toward", "towards", "far", "upper", "lower", "top",
        "bottom", "middle", "center", "centre", "turn", "turns", "turned", "turning", "go", "goes", "went", "move",
        "moves", "moved", "look", "looks", "looked", "looking", "keep", "veer", "veers", "head", "heads", "pointing",
        "points", "facing", "faces", "its", "his", "her", "their", "your", "my", "our", "extreme", "lower-", "upper-")
#: words after "left"/"right" that make it a side ("left side", "right-hand", "left of")
_POST = ("side", "sides", "hand", "handed", "corner", "corners", "edge", "edges", "half", "part", "wing", "of", "most",
         "ward", "wards", "column", "columns", "arm", "arms", "leg", "legs", "eye", "eyes", "ear", "ears", "foot",
         "feet", "panel", "margin", "border", "lane", "shoulder", "cheek", "wrist", "knee")
_PRE_RE = re.compile(r"\b(?:" + "|".join(_PRE) + r")[\s-]+(left|right)\b", re.IGNORECASE)
_POST_RE = re.compile(r"\b(left|right)[\s-]*(?:" + "|".join(_POST) + r")\b", re.IGNORECASE)
_ANY_RE = re.compile(r"\b(left|right)\b", re.IGNORECASE)


def _case_like(word: str, like: str) -> str:
    if like.isupper():
        return word.upper()
    return word.capitalize() if like[:1].isupper() else word


def swap_left_right(text: str, rules: str = "spatial") -> str:
    """After a horizontal flip: 'the dog on the left' -> 'the dog on the right'.

    ``rules="spatial"`` (default) swaps only spatial uses: English "left"/"right" after a
    determiner, preposition or motion verb ("on the left", "turn right", "top-left") or before
    a side noun ("left side", "right-hand", "left of") -- "he left the room" stays -- and
    Chinese 左/右 except in 左右 ("about", as in 十岁左右). ``"all"`` swaps every occurrence;
    ``"off"`` none.
    """
    if rules == "off":
        return text
    if rules not in ("spatial", "all"):
        raise ValueError(f"left/right swap rules must be spatial, all or off, got {rules!r}")
    spans: set[tuple[int, int]] = set()
    if rules == "all":
        spans = {m.span(1) for m in _ANY_RE.finditer(text)}
    else:
        spans = {m.span(1) for m in _PRE_RE.finditer(text)} | {m.span(1) for m in _POST_RE.finditer(text)}
    chars = list(text)
    for a, b in sorted(spans, reverse=True):
        word = text[a:b]
        chars[a:b] = list(_case_like(_SWAP[word.lower()], word))
    out = "".join(chars)
    return re.sub(r"左右|右左|[左右]", lambda m: m.group(0) if len(m.group(0)) == 2 else _ZH_SWAP[m.group(0)], out)

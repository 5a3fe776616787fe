"""Rendered text with exact ground truth: lines, paragraphs and dense layouts in every installed
font, with the augmentations OCR data needs (rotation, perspective distortion, colour, blur,
noise, JPEG artefacts, backgrounds) and the exact line and word polygons *after* augmentation.

Each word's polygon is the four corners of its ink box (``ImageDraw.textbbox``) mapped by the
same homography that warps the pixels, so the geometry is right by construction; tests re-render
each word's box as a mask, warp it, and compare (IoU), and run OCR over clean pages (CER).
Seeded and deterministic: ``render_page(seed, i)`` is a pure function of the seed, the index
and the set of installed fonts (the font used is recorded in ``meta.font``); ``MMLAKE_FONT_DIRS``
(paths separated by ``:``) replaces the default font folders.

Scripts: ``latin``, ``cjk`` (lines without spaces between words, as Chinese is written) and
``handwriting`` (script/handwriting fonts: Dancing Script, Comic Neue, Breip, Humor Sans ...).
Fonts that draw lower case as capitals (Humor Sans) get upper-case ground truth, so the
transcript always says what the pixels show.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

__all__ = ["find_fonts", "render_page", "TextPage", "Word", "words_vocabulary", "text_sample", "text_samples",
           "warp_points", "caps_only", "FONT_PACKAGES"]

FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", str(Path.home() / ".fonts"))
CJK_HINTS = ("cjk", "noto sans cjk", "wqy", "droid sans fallback", "ipag", "ukai", "uming")
HAND_HINTS = ("hand", "script", "comic", "kalam", "caveat", "dancing", "z003", "chancery", "breip", "humor")
FONT_PACKAGES = {"latin": "apt-get install fonts-dejavu-core fonts-liberation2",
                 "cjk": "apt-get install fonts-wqy-microhei (or fonts-noto-cjk)",
                 "handwriting": "apt-get install fonts-dancingscript fonts-comic-neue fonts-breip"}
SKIP_HINTS = ("math", "symbol", "dingbat", "emoji", "extralight")


def font_dirs() -> tuple[str, ...]:
    env = os.environ.get("MMLAKE_FONT_DIRS")
    return tuple(d for d in env.split(os.pathsep) if d) if env is not None else FONT_DIRS


def find_fonts() -> dict[str, list[str]]:
    """Installed TrueType/OpenType fonts by family: ``latin``, ``cjk``, ``handwriting``."""
    return _find_fonts(font_dirs())


@lru_cache(maxsize=4)
def _find_fonts(dirs: tuple[str, ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"latin": [], "cjk": [], "handwriting": []}
    for d in dirs:
        for p in sorted(Path(d).rglob("*")):
            if p.suffix.lower() not in (".ttf", ".otf", ".ttc"):
                continue
            name = p.name.lower()
            if any(h in name for h in SKIP_HINTS):
                continue
            if any(h in name for h in CJK_HINTS):
                out["cjk"].append(str(p))
            elif any(h in name for h in HAND_HINTS):
                out["handwriting"].append(str(p))
            else:
                out["latin"].append(str(p))
    return out


@lru_cache(maxsize=1)
def words_vocabulary() -> tuple[str, ...]:
    """Plain words from the English text that ships with CPython (no download)."""
    import pydoc_data.topics as topics
    import re

    text = " ".join(topics.topics[k] for k in sorted(topics.topics))
    words = sorted({w for w in re.findall(r"\b[A-Za-z][a-z]{1,11}\b", text)})
    return tuple(words)


CJK_CHARS = "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持取设始版双历越史商千片容研像找友孩站广改议形委早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞观争究包组造落视济喜离虽坐集编宝谈府拉黑且随格尽剑讲布杀微怕母调局根曾准团段终乐切级克精哪官示冷域读"


@dataclass(frozen=True)
class Word:
    text: str
    polygon: tuple[tuple[float, float], ...]  # 4 corners, clockwise from top-left, after augmentation
    line: int


@dataclass
class TextPage:
    width: int
    height: int
    jpeg: bytes
    font: str
    font_size: int
    lines: list[str]
    line_polygons: list[tuple[tuple[float, float], ...]]
    words: list[Word]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@lru_cache(maxsize=64)
def caps_only(font_path: str) -> bool:
    """True when the font draws lower-case letters as capitals or small capitals (x-height at
    cap height; text fonts sit at 0.5-0.8): its ground truth is upper case."""
    f = ImageFont.truetype(font_path, 64)
    x, cap = f.getbbox("x"), f.getbbox("X")
    return (x[3] - x[1]) >= 0.92 * max(1, cap[3] - cap[1])


def _homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    a = []
    for (x, y), (u, v) in zip(src, dst, strict=True):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y, -u])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y, -v])
    _, _, vt = np.linalg.svd(np.asarray(a, dtype=float))
    h = vt[-1].reshape(3, 3)
    return h / h[2, 2]


def warp_points(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.c_[pts, np.ones(len(pts))] @ h.T
    return p[:, :2] / p[:, 2:3]


def render_page(seed: int, index: int, *, size: tuple[int, int] = (640, 480), font: str | None = None,
                font_size: int | None = None, lines: int | None = None, augment: bool = True,
                script: str = "latin") -> TextPage:
    """One page of text lines with exact word/line polygons (after augmentation when asked)."""
    if script not in FONT_PACKAGES:
        raise ValueError(f"script must be one of {sorted(FONT_PACKAGES)}, got {script!r}")
    rng = np.random.default_rng([seed, index, 0x7E47])
    fonts = find_fonts()[script]
    if not fonts:
        raise LookupError(f"no {script} font is installed (looked in {', '.join(font_dirs()) or 'no folder'}; "
                          f"on Debian: {FONT_PACKAGES.get(script, 'fonts-dejavu-core')})")
    font_path = font or fonts[int(rng.integers(len(fonts)))]
    fsize = int(font_size or rng.integers(16, 41))
    f = ImageFont.truetype(font_path, fsize)
    upper = script != "cjk" and caps_only(font_path)
    w, h = size
    bg = tuple(int(c) for c in rng.integers(200, 256, 3)) if augment else (255, 255, 255)
    ink = tuple(int(c) for c in rng.integers(0, 70, 3)) if augment else (0, 0, 0)
    img = Image.new("RGB", (w, h), bg)
    texture = None
    if augment and rng.random() < 0.5:  # a paper-like background: smooth blotches around the colour
        gh, gw = max(2, h // 48), max(2, w // 48)
        grid = rng.normal(0, 14, (gh, gw, 1)) + rng.normal(0, 4, (gh, gw, 3))  # mostly light/dark, a little hue
        blot = np.asarray(Image.fromarray(np.clip(grid + 128, 0, 255).astype(np.uint8)).resize(
            (w, h), Image.Resampling.BICUBIC), dtype=np.float32) - 128
        img = Image.fromarray(np.clip(np.asarray(img, dtype=np.float32) + blot, 170, 255).astype(np.uint8))
        texture = "blotches"
    draw = ImageDraw.Draw(img)
    vocab = words_vocabulary()
    margin = max(8, fsize // 2)
    line_h = int(fsize * 1.5)
    n_lines = lines or max(1, min(12, (h - 2 * margin) // line_h))
    texts: list[str] = []
    boxes: list[list[tuple[str, tuple[int, int, int, int]]]] = []
    y = margin
    for _ in range(n_lines):
        if y + line_h > h - margin:
            break
        x = margin
        row: list[tuple[str, tuple[int, int, int, int]]] = []
        while True:
            word = (vocab[int(rng.integers(len(vocab)))] if script != "cjk"
                    else "".join(CJK_CHARS[int(i)] for i in rng.integers(0, len(CJK_CHARS), int(rng.integers(2, 5)))))
            if upper:
                word = word.upper()
            bbox = draw.textbbox((x, y), word, font=f)
            if bbox[2] > w - margin:
                break
            draw.text((x, y), word, font=f, fill=ink)
            row.append((word, bbox))
            # Chinese runs words together; other scripts put a space between them
            x = (x + int(math.ceil(draw.textlength(word, font=f)))) if script == "cjk" else \
                bbox[2] + int(draw.textlength(" ", font=f)) + 1
        if not row:
            break
        texts.append(("" if script == "cjk" else " ").join(wd for wd, _ in row))
        boxes.append(row)
        y += line_h
    params: dict[str, Any] = {"background": texture} if texture else {}
    hmat = np.eye(3)
    if augment:
        # rotation and perspective distortion: one homography for pixels and polygons
        ang = math.radians(float(rng.uniform(-4, 4)))
        cx, cy = w / 2, h / 2
        corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=float)
        rot = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
        moved = (corners - [cx, cy]) @ rot.T + [cx, cy]
        moved += rng.uniform(-0.04, 0.04, (4, 2)) * [w, h]
        # keep the page inside the frame: fit the moved corners back into it
        lo, hi = moved.min(axis=0), moved.max(axis=0)
        scale = min(w / (hi[0] - lo[0]), h / (hi[1] - lo[1]), 1.0)
        moved = (moved - lo) * scale + ([w, h] - (hi - lo) * scale) / 2
        hmat = _homography(corners, moved)
        inv = np.linalg.inv(hmat)
        inv = inv / inv[2, 2]
        img = img.transform((w, h), Image.Transform.PERSPECTIVE, data=tuple(inv.ravel()[:8]),
                            resample=Image.Resampling.BICUBIC, fillcolor=bg)
        params.update(rotate_deg=round(math.degrees(ang), 3), perspective=moved.round(2).tolist())
        if rng.random() < 0.5:
            r = float(rng.uniform(0.3, 1.0))
            img = img.filter(ImageFilter.GaussianBlur(r))
            params["blur"] = round(r, 3)
        if rng.random() < 0.5:
            arr = np.asarray(img).astype(np.float32) + rng.normal(0, 6, (h, w, 3))
            img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
            params["noise"] = 6
    quality = int(rng.integers(60, 95)) if augment else 95
    params["jpeg_quality"] = quality
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    words: list[Word] = []
    line_polys = []
    for li, row in enumerate(boxes):
        for wd, (x0, y0, x1, y1) in row:
            quad = warp_points(hmat, np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=float))
            words.append(Word(wd, tuple((round(float(a), 2), round(float(b), 2)) for a, b in quad), li))
        x0, y0 = row[0][1][0], min(b[1] for _, b in row)
        x1, y1 = row[-1][1][2], max(b[3] for _, b in row)
        quad = warp_points(hmat, np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=float))
        line_polys.append(tuple((round(float(a), 2), round(float(b), 2)) for a, b in quad))
    params["homography"] = hmat.round(8).tolist()
    return TextPage(w, h, buf.getvalue(), Path(font_path).name, fsize, texts, line_polys, words, params)


KEY_PREFIX = {"latin": "text", "cjk": "textcjk", "handwriting": "texthand"}


def text_sample(seed: int, index: int, *, size: tuple[int, int] = (640, 480), augment: bool = True,
                script: str = "latin") -> Any:
    """One ``ocr`` sample: the page image, its transcript, line and word polygons, ``meta.synthetic``."""
    from datalake.sample import Annotation, Media, MediaPart, Sample, Source, TextPart

    p = render_page(seed, index, size=size, augment=augment, script=script)
    anns = [Annotation(0, "polygon", points=poly, text=line, role="ocr_line", score=1.0)
            for poly, line in zip(p.line_polygons, p.lines, strict=True)]
    anns += [Annotation(0, "polygon", points=wd.polygon, text=wd.text, role="ocr_word", score=1.0,
                        attrs={"line": wd.line}) for wd in p.words]
    return Sample(
        key=f"{KEY_PREFIX[script]}{index:06d}", kind="ocr", source=Source(f"synth://text/{script}/{seed}/{index}", "CC0-1.0"),
        media=(Media("0.jpg", "image/jpeg", p.width, p.height),),
        content=(MediaPart(0), TextPart(p.text)), annotations=tuple(anns),
        meta={"synthetic": True, "generator": "synth.text", "script": script, "font": p.font, "font_size": p.font_size,
              "augment": p.params | {"homography": None}},
        blobs={"0.jpg": p.jpeg})


def text_samples(n: int, seed: int = 0, *, size: tuple[int, int] = (640, 480), augment: bool = True,
                 script: str = "latin", start: int = 0) -> list[Any]:
    """``n`` ``ocr`` samples (indices ``start .. start+n-1``), see ``text_sample``."""
    return [text_sample(seed, i, size=size, augment=augment, script=script) for i in range(start, start + n)]

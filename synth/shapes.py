"""Captioned images of coloured shapes, with exact boxes: a small corpus with ground truth.

Each image is a textured gradient background with 1-4 shapes (circle, square, triangle) of
named colours; its caption names them in reading order and refers to their boxes by
placeholder. Everything derives from ``numpy.random.default_rng([seed, index])``, so image
*i* of seed *s* is the same bytes on every machine and in every process -- no global RNG.

Used by ``make demo`` (an img2dataset-layout folder, with a few deliberately broken inputs
to show the rejects accounting), by the tests, and by the benchmarks (``size`` up to real
photo sizes; the noise texture makes JPEGs about as large as photos of that size).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["ShapeImage", "render_shapes", "shape_samples", "write_caption_folder", "write_shapes_tar", "COLOURS",
           "SHAPES"]

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 210, 40),
           "purple": (140, 60, 170), "orange": (245, 140, 30), "white": (245, 245, 245), "black": (15, 15, 15)}
SHAPES = ("circle", "square", "triangle")


@dataclass(frozen=True)
class ShapeImage:
    jpeg: bytes
    width: int
    height: int
    caption: str  # with {box:i} placeholders
    boxes: tuple[tuple[int, int, int, int], ...]
    labels: tuple[str, ...]

    def plain_caption(self) -> str:
        """The caption with placeholders replaced by the shape names (for caption-only data)."""
        out = self.caption
        for i, label in enumerate(self.labels):
            out = out.replace(f" at {{box:{i}}}", "").replace(f"{{box:{i}}}", label)
        return out


def render_shapes(seed: int, index: int, size: tuple[int, int] = (320, 240), quality: int = 90,
                  noise: float = 12.0) -> ShapeImage:
    rng = np.random.default_rng([seed, index])
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    c0, c1 = rng.integers(30, 225, size=(2, 3))
    t = (x / max(1, w - 1) * rng.uniform(0.2, 1.0) + y / max(1, h - 1) * rng.uniform(0.2, 1.0)) / 2
    bg = c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None]
    bg += rng.normal(0, noise, size=(h, w, 3))
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    n = int(rng.integers(1, 5))
    boxes, labels = [], []
    colour_names = list(COLOURS)
    for _ in range(n):
        side = int(rng.integers(max(8, min(w, h) // 8), max(9, min(w, h) // 3)))
        x0 = int(rng.integers(0, w - side))
        y0 = int(rng.integers(0, h - side))
        box = (x0, y0, x0 + side, y0 + side)
        shape = SHAPES[int(rng.integers(0, len(SHAPES)))]
        colour = colour_names[int(rng.integers(0, len(colour_names)))]
        fill = COLOURS[colour]
        if shape == "circle":
            draw.ellipse(box, fill=fill)
        elif shape == "square":
            draw.rectangle(box, fill=fill)
        else:
            draw.polygon([(x0 + side / 2, y0), (x0 + side, y0 + side), (x0, y0 + side)], fill=fill)
        boxes.append(box)
        labels.append(f"{'an' if colour[0] in 'aeiou' else 'a'} {colour} {shape}")
    order = sorted(range(n), key=lambda i: (boxes[i][1] // 32, boxes[i][0]))
    boxes = [boxes[i] for i in order]
    labels = [labels[i] for i in order]
    parts = [f"{label} at {{box:{i}}}" for i, label in enumerate(labels)]
    caption = ("An image of " + ", ".join(parts[:-1]) + (" and " if n > 1 else "") + parts[-1] + ".")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return ShapeImage(buf.getvalue(), w, h, caption, tuple(boxes), tuple(labels))


def shape_samples(n: int, seed: int = 0, size: tuple[int, int] = (96, 64), start: int = 0) -> list[Any]:
    """``n`` caption samples (``datalake.Sample``) with their boxes as annotations."""
    from datalake.sample import Annotation, Media, MediaPart, Sample, Source, TextPart

    out = []
    for i in range(start, start + n):
        im = render_shapes(seed, i, size)
        out.append(Sample(
            key=f"s{i:05d}", kind="caption", source=Source(f"synth://shapes/{seed}/{i}", "CC0-1.0"),
            media=(Media("0.jpg", "image/jpeg", im.width, im.height),),
            content=(MediaPart(0), TextPart(im.caption)),
            annotations=tuple(Annotation(0, "box", xyxy=b, label=lab, role="object")
                              for b, lab in zip(im.boxes, im.labels, strict=True)),
            meta={"i": i, "synthetic": True}, blobs={"0.jpg": im.jpeg}))
    return out


def write_caption_folder(root: str | Path, n: int, seed: int = 0, size: tuple[int, int] = (320, 240),
                         broken: bool = False) -> dict[str, int]:
    """Write ``n`` images in the img2dataset layout (``00000/000000123.jpg`` + ``.txt`` + ``.json``).

    With ``broken=True`` a few inputs are added that ingest must reject (and count): a truncated
    JPEG, a zero-byte file, a PNG bomb, a non-UTF-8 caption, a missing caption, invalid JSON.
    Returns the number of inputs written per expected outcome.
    """
    root = Path(root)
    shard = root / "00000"
    shard.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        im = render_shapes(seed, i, size)
        stem = shard / f"{i:09d}"
        stem.with_suffix(".jpg").write_bytes(im.jpeg)
        stem.with_suffix(".txt").write_text(im.plain_caption())
        stem.with_suffix(".json").write_text(json.dumps({
            "key": f"{i:09d}", "url": f"synth://shapes/{seed}/{i}", "width": im.width, "height": im.height,
            "license": "CC0-1.0", "boxes": [list(b) for b in im.boxes], "labels": list(im.labels)}))
    outcome = {"ok": n}
    if broken:
        good = render_shapes(seed, 10**6, size)
        bad = root / "bad"
        bad.mkdir(exist_ok=True)
        (bad / "truncated.jpg").write_bytes(good.jpeg[: len(good.jpeg) // 2])
        (bad / "truncated.txt").write_text("half an image")
        (bad / "empty.jpg").write_bytes(b"")
        (bad / "empty.txt").write_text("nothing here")
        bomb = io.BytesIO()
        Image.new("1", (20000, 20000)).save(bomb, "PNG")
        (bad / "bomb.png").write_bytes(bomb.getvalue())
        (bad / "bomb.txt").write_text("a decompression bomb")
        (bad / "latin1.jpg").write_bytes(good.jpeg)
        (bad / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
        (bad / "nocaption.jpg").write_bytes(good.jpeg)
        (bad / "badjson.jpg").write_bytes(good.jpeg)
        (bad / "badjson.json").write_text("{not json")
        outcome.update({"truncated_image": 1, "empty_file": 1, "too_many_pixels": 1, "non_utf8_text": 1,
                        "missing_caption": 1, "invalid_json": 1})
    return outcome


def write_shapes_tar(path: str | Path, n: int, seed: int = 0, size: tuple[int, int] = (320, 240)) -> Path:
    """``n`` shape samples as a WebDataset tar of mmlake records (``<key>.json`` + ``<key>.0.jpg``),
    boxes included -- what a team receiving annotated data from elsewhere would ingest."""
    import tarfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for s in shape_samples(n, seed, size):
            for name, data in ((f"{s.key}.json", s.to_json_bytes()), (f"{s.key}.0.jpg", s.blobs["0.jpg"])):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path

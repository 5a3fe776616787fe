"""Synthetic videos with exact temporal ground truth, rendered with PyAV (H.264 in MP4).

Each video is a few scenes on varied backgrounds (flat, gradient, noise, stripes) joined by hard
cuts or fades through black; in each scene shapes and words appear, move on straight lines,
change colour and disappear. Everything is decided per frame index, so the ground truth is
exact: per object its first and last frame (``t0`` = first frame / fps, ``t1`` = frame after
the last / fps), its trajectory (centre at t0 and t1, linear between), its colour changes; per
cut its frame and kind. QA with computed answers covers temporal grounding, counting,
direction and order of events. A video is a pure function of ``(seed, index)``.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from synth.shapes import COLOURS

__all__ = ["VideoObject", "SyntheticVideo", "render_video", "video_sample", "video_qa", "write_video_folder",
           "BACKGROUNDS"]

BACKGROUNDS = ("flat", "gradient", "noise", "stripes")
_SHAPES = ("circle", "square", "triangle")
_OBJ_COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")
_WORDS = ("HELLO", "START", "PAUSE", "ALPHA", "OMEGA", "DELTA")
_BG_TONES = [(70, 70, 80), (200, 200, 190), (60, 90, 70), (110, 80, 60), (160, 170, 190)]


@dataclass(frozen=True)
class VideoObject:
    """One thing on screen. Frames ``f0 .. f1-1`` show it; it moves linearly from ``start`` to
    ``end`` (centres in pixels) and takes ``colour2`` from frame ``fc`` on (if set)."""

    id: int
    kind: str  # circle | square | triangle | text
    colour: str
    f0: int
    f1: int
    start: tuple[float, float]
    end: tuple[float, float]
    size: int
    text: str | None = None
    colour2: str | None = None
    fc: int | None = None

    def centre(self, f: int) -> tuple[float, float]:
        a = 0.0 if self.f1 - 1 <= self.f0 else (f - self.f0) / (self.f1 - 1 - self.f0)
        return (self.start[0] + a * (self.end[0] - self.start[0]), self.start[1] + a * (self.end[1] - self.start[1]))

    def colour_at(self, f: int) -> str:
        return self.colour2 if self.colour2 and self.fc is not None and f >= self.fc else self.colour

    @property
    def label(self) -> str:
        return f"the word {self.text}" if self.kind == "text" else f"the {self.colour} {self.kind}"

    def direction(self) -> str:
        dx, dy = self.end[0] - self.start[0], self.end[1] - self.start[1]
        if math.hypot(dx, dy) < 4:
            return "still"
        return ("right" if dx > 0 else "left") if abs(dx) >= abs(dy) else ("down" if dy > 0 else "up")


@dataclass
class SyntheticVideo:
    key: str
    data: bytes
    width: int
    height: int
    fps: int
    frames: int
    scenes: list[dict[str, Any]]  # {f0, f1, background}
    cuts: list[dict[str, Any]]  # {frame, t, kind}: the first frame of the next scene (a fade: its black frame)
    objects: list[VideoObject] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps

    def truth(self) -> dict[str, Any]:
        fps = self.fps
        return {"fps": fps, "frames": self.frames, "width": self.width, "height": self.height,
                "cuts": self.cuts, "scenes": self.scenes,
                "objects": [{"id": o.id, "kind": o.kind, "colour": o.colour, "text": o.text, "label": o.label,
                             "f0": o.f0, "f1": o.f1, "t0": round(o.f0 / fps, 6), "t1": round(o.f1 / fps, 6),
                             "start": list(o.start), "end": list(o.end), "size": o.size,
                             "direction": o.direction(), "colour2": o.colour2,
                             "tc": round(o.fc / fps, 6) if o.fc is not None else None} for o in self.objects]}


def _background(kind: str, w: int, h: int, tone: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    t = np.array(tone, dtype=np.float32)
    if kind == "flat":
        img = np.broadcast_to(t, (h, w, 3)).copy()
    elif kind == "gradient":
        ramp = np.linspace(0.6, 1.3, w, dtype=np.float32)[None, :, None]
        img = np.broadcast_to(t * ramp, (h, w, 3)).copy()
    elif kind == "noise":
        img = t + rng.normal(0, 14, (h, w, 3)).astype(np.float32)
    else:  # stripes
        band = ((np.arange(h) // 16) % 2).astype(np.float32)[:, None, None]
        img = np.broadcast_to(t * (0.8 + 0.35 * band), (h, w, 3)).copy()
    return np.clip(img, 0, 255).astype(np.uint8)


def _font(size: int) -> Any:
    for p in ("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        if Path(p).exists():
            return ImageFont.truetype(p, size)
    return ImageFont.load_default()


def _draw(d: ImageDraw.ImageDraw, o: VideoObject, f: int) -> None:
    cx, cy = o.centre(f)
    r = o.size / 2
    fill = COLOURS[o.colour_at(f)]
    box = (cx - r, cy - r, cx + r, cy + r)
    if o.kind == "circle":
        d.ellipse(box, fill=fill)
    elif o.kind == "square":
        d.rectangle(box, fill=fill)
    elif o.kind == "triangle":
        d.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=fill)
    else:
        d.text((cx, cy), o.text or "", fill=fill, font=_font(o.size), anchor="mm")


def _plan(rng: np.random.Generator, w: int, h: int, fps: int, n_scenes: int, scene_s: tuple[float, float],
          fade_p: float, text_p: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[VideoObject]]:
    scenes: list[dict[str, Any]] = []
    cuts: list[dict[str, Any]] = []
    objects: list[VideoObject] = []
    f = 0
    used: set[tuple[str, str]] = set()
    tones = rng.permutation(len(_BG_TONES))
    kinds = ["fade" if rng.random() < fade_p else "cut" for _ in range(n_scenes - 1)]
    fade_len = max(2, fps // 5)
    for i in range(n_scenes):
        n = int(round(rng.uniform(*scene_s) * fps))
        bg = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
        scenes.append({"f0": f, "f1": f + n, "background": bg, "tone": list(_BG_TONES[int(tones[i % len(tones)])])})
        if i:
            cuts.append({"frame": f, "t": round(f / fps, 6), "kind": kinds[i - 1]})
        # objects stay clear of the dark frames of a fade, so every frame that shows one shows it fully
        lo = fade_len if i and kinds[i - 1] == "fade" else 0
        hi = n - fade_len if i < n_scenes - 1 and kinds[i] == "fade" else n
        # 1-2 objects per scene, distinct (colour, shape) over the video so questions are unambiguous
        for _ in range(int(rng.integers(1, 3))):
            for _try in range(20):
                shape = "text" if rng.random() < text_p else _SHAPES[int(rng.integers(3))]
                colour = _OBJ_COLOURS[int(rng.integers(len(_OBJ_COLOURS)))]
                ident = (colour, shape) if shape != "text" else ("text", colour)
                if ident not in used:
                    used.add(ident)
                    break
            size = int(rng.integers(max(16, h // 8), max(24, h // 4)))
            margin = size
            a = int(rng.integers(lo, max(lo + 1, n // 3)))
            b = int(rng.integers(min(max(a + fps // 2, n * 2 // 3), hi), hi + 1))
            b = min(max(b, a + 2), hi)
            horizontal = rng.random() < 0.6
            if horizontal:
                y = float(rng.uniform(margin, h - margin))
                x0, x1 = float(rng.uniform(margin, w / 3)), float(rng.uniform(2 * w / 3, w - margin))
                start, end = ((x0, y), (x1, y)) if rng.random() < 0.5 else ((x1, y), (x0, y))
            else:
                x = float(rng.uniform(margin, w - margin))
                y0, y1 = float(rng.uniform(margin, h / 3)), float(rng.uniform(2 * h / 3, h - margin))
                start, end = ((x, y0), (x, y1)) if rng.random() < 0.5 else ((x, y1), (x, y0))
            colour2 = fc = None
            if shape != "text" and rng.random() < 0.35 and b - a > fps:
                colour2 = next(c for c in rng.permutation(_OBJ_COLOURS) if c != colour and (c, shape) not in used)
                fc = f + int(rng.integers(a + (b - a) // 3, a + 2 * (b - a) // 3))
                used.add((str(colour2), shape))
            text = _WORDS[int(rng.integers(len(_WORDS)))] if shape == "text" else None
            objects.append(VideoObject(len(objects), shape, colour, f + a, f + b, start, end,
                                       size if shape != "text" else max(18, size * 2 // 3), text,
                                       str(colour2) if colour2 else None, fc))
        f += n
    return scenes, cuts, objects


def render_video(seed: int, index: int, size: tuple[int, int] = (320, 240), fps: int = 25, n_scenes: int = 3,
                 scene_s: tuple[float, float] = (1.2, 2.4), fade_p: float = 0.3, text_p: float = 0.2,
                 gop: int = 25, qp: int = 26) -> SyntheticVideo:
    """Render one video (H.264, yuv420p, MP4; keyframe every ``gop`` frames and at every cut)."""
    import av

    av.logging.set_level(av.logging.PANIC)  # libx264's statistics on stderr
    w, h = size
    rng = np.random.default_rng([int(seed), int(index), 0x71DE0])
    scenes, cuts, objects = _plan(rng, w, h, fps, n_scenes, scene_s, fade_p, text_p)
    frames = scenes[-1]["f1"]
    fade_len = max(2, fps // 5)
    fades = {c["frame"] for c in cuts if c["kind"] == "fade"}
    backs = [_background(s["background"], w, h, tuple(s["tone"]), np.random.default_rng([int(seed), int(index), i]))
             for i, s in enumerate(scenes)]
    buf = io.BytesIO()
    out = av.open(buf, mode="w", format="mp4")
    st = out.add_stream("libx264", rate=Fraction(fps, 1))
    st.width, st.height, st.pix_fmt = w, h, "yuv420p"
    # one encoder thread (x264's sliced threads made the bytes differ from run to run under load);
    # constant QP and no weighted prediction: no rate control, adaptive quantisation or mb-tree, so
    # no float arithmetic whose result could follow the thread's FP mode (a library loaded
    # mid-run may switch on flush-to-zero) -- the bytes still differed once on CI with CRF
    st.options = {"qp": str(qp), "preset": "veryfast", "g": str(gop), "sc_threshold": "40", "bf": "0",
                  "weightp": "none", "threads": "1"}
    st.codec_context.thread_count = 1
    si = 0
    for f in range(frames):
        while f >= scenes[si]["f1"]:
            si += 1
        im = Image.fromarray(backs[si])
        d = ImageDraw.Draw(im)
        for o in objects:
            if o.f0 <= f < o.f1:
                _draw(d, o, f)
        arr = np.asarray(im)
        # fade through black: the scene's last frames darken, the next scene's first frames brighten
        for b in fades:
            if b - fade_len <= f < b:
                arr = (arr.astype(np.int32) * (b - f - 1) // fade_len).astype(np.uint8)
            elif b <= f < b + fade_len:
                arr = (arr.astype(np.int32) * (f - b) // fade_len).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(_yuv420p(arr), format="yuv420p")
        frame.pts = f
        for p in st.encode(frame):
            out.mux(p)
    for p in st.encode():
        out.mux(p)
    out.close()
    return SyntheticVideo(f"synvid-{seed}-{index:05d}", buf.getvalue(), w, h, fps, frames, scenes, cuts, objects)


def _yuv420p(rgb: np.ndarray) -> np.ndarray:
    """RGB -> YUV 4:2:0 (BT.601, limited range) in integer arithmetic, as PyAV's planar layout (Y
    rows, then U and V). FFmpeg's swscale picks SIMD paths by buffer alignment, and numpy's float
    reductions sum in an order that can depend on alignment too (a chroma value on .5 rounded
    either way on CI), so both could change the bytes from run to run; integers cannot."""
    x = rgb.astype(np.int32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16
    h, w = y.shape

    def sub(c: np.ndarray) -> np.ndarray:  # 2x2 sums, exact
        return c.reshape(h // 2, 2, w // 2, 2).sum(axis=(1, 3), dtype=np.int64)

    rs, gs, bs = sub(r), sub(g), sub(b)  # chroma of the 2x2 mean colour, rounded once
    u = ((-38 * rs - 74 * gs + 112 * bs + 512) >> 10) + 128
    v = ((112 * rs - 94 * gs - 18 * bs + 512) >> 10) + 128
    planes = [np.clip(p, 0, 255).astype(np.uint8) for p in (y, u, v)]
    return np.concatenate([planes[0].reshape(-1), planes[1].reshape(-1), planes[2].reshape(-1)]).reshape(h * 3 // 2, w)


def _t(x: float) -> str:
    return f"{x:.2f}s"


def video_qa(v: SyntheticVideo) -> list[dict[str, Any]]:
    """Questions with computed answers: grounding (with the object's segment index), counting,
    direction, colour change and order of events."""
    fps = v.fps
    qa: list[dict[str, Any]] = []
    for o in v.objects:
        qa.append({"type": "grounding", "object": o.id, "q": f"When is {o.label} on screen?",
                   "a": f"from {_t(o.f0 / fps)} to {_t(o.f1 / fps)}", "t0": o.f0 / fps, "t1": o.f1 / fps})
        if o.direction() != "still":
            qa.append({"type": "direction", "object": o.id, "q": f"Which way does {o.label} move?",
                       "a": o.direction()})
        if o.colour2 and o.fc is not None:
            qa.append({"type": "colour_change", "object": o.id, "q": f"What colour does the {o.colour} {o.kind} turn?",
                       "a": o.colour2, "t": o.fc / fps})
    shapes = [o for o in v.objects if o.kind != "text"]
    qa.append({"type": "count", "q": "How many shapes appear in the video?", "a": str(len(shapes))})
    qa.append({"type": "count", "q": "How many scene cuts are there?", "a": str(len(v.cuts))})
    if len(v.objects) >= 2:
        a, b = v.objects[0], v.objects[-1]
        if a.f0 != b.f0:
            first = a if a.f0 < b.f0 else b
            qa.append({"type": "order", "q": f"Which appears first, {a.label} or {b.label}?", "a": first.label})
    return qa


def video_sample(v: SyntheticVideo) -> Any:
    """The video as a ``video`` Sample: the MP4, one ``segment`` annotation per scene and per
    object, QA in the text with ``{segment:i}`` placeholders, the exact truth in ``meta.truth``."""
    from datalake.sample import Annotation, Media, MediaPart, Sample, Source, TextPart

    anns: list[Annotation] = [Annotation(0, "segment", label="scene", t0=s["f0"] / v.fps, t1=s["f1"] / v.fps)
                              for s in v.scenes]
    obj_ann: dict[int, int] = {}
    for o in v.objects:
        obj_ann[o.id] = len(anns)
        anns.append(Annotation(0, "segment", label=o.label.removeprefix("the "), t0=o.f0 / v.fps, t1=o.f1 / v.fps))
    lines = []
    for q in video_qa(v):
        a = f"{{segment:{obj_ann[q['object']]}}}" if q["type"] == "grounding" else q["a"]
        lines.append(f"Q: {q['q']}\nA: {a}")
    return Sample(key=v.key, kind="video", source=Source(f"synth://video/{v.key}", "CC0-1.0"),
                  media=(Media("mp4", "video/mp4", v.width, v.height, duration_s=v.duration_s, fps=float(v.fps)),),
                  content=(MediaPart(0), TextPart("\n".join(lines))), annotations=tuple(anns),
                  meta={"synthetic": True, "generator": "synth.video", "truth": v.truth(), "qa": video_qa(v)},
                  blobs={"mp4": v.data})


def write_video_folder(root: str | Path, n: int, seed: int = 0, size: tuple[int, int] = (320, 240),
                       **kw: Any) -> list[SyntheticVideo]:
    """``n`` videos as ``<key>.mp4`` files (and their truth as ``<key>.truth.json``) in ``root``."""
    import json

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        v = render_video(seed, i, size, **kw)
        (root / f"{v.key}.mp4").write_bytes(v.data)
        (root / f"{v.key}.truth.json").write_text(json.dumps(v.truth(), indent=1))
        out.append(v)
    return out

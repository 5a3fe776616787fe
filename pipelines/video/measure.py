"""What can be measured in a video's frames, per shot: motion, brightness, colours.

Frames are sampled at ``step_s`` and shrunk to ``max_side`` pixels (the measures are about the
picture's layout, not its detail). Motion is dense optical flow (OpenCV's Farneback) between
consecutive sampled frames of one shot: its magnitude (pixels of the original frame per second)
and the mean direction of the pixels that move, so a shape crossing a still background and a
camera pan both have a direction. Scores never depend on thresholds (filters decide).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ShotMeasure", "measure_shots", "dominant_colours", "direction_word", "PALETTE"]

#: names a caption may use for a colour (nearest in RGB)
PALETTE = {"red": (210, 40, 40), "green": (40, 160, 60), "blue": (40, 80, 210), "yellow": (230, 210, 40),
           "purple": (135, 60, 165), "orange": (240, 140, 30), "white": (240, 240, 240), "black": (12, 12, 12),
           "grey": (128, 128, 128), "brown": (110, 75, 45), "pink": (240, 150, 190), "cyan": (60, 200, 210),
           "dark green": (40, 80, 50), "light grey": (195, 195, 190), "dark grey": (70, 70, 75)}
_NAMES = list(PALETTE)
_RGB = np.array([PALETTE[n] for n in _NAMES], dtype=np.float32)


@dataclass
class ShotMeasure:
    shot: int
    frames: int  # sampled frames
    brightness: float  # mean luma 0-255
    contrast: float  # std of luma
    motion: float  # mean |frame difference| of luma, 0-255
    flow: float  # median speed of moving pixels, px/s of the original frame
    flow_dx: float  # mean unit direction of moving pixels (+x right, +y down)
    flow_dy: float
    moving: float  # share of pixels that move
    colours: list[tuple[str, float]]
    mover_colour: str | None = None  # the dominant colour of the pixels that move

    def to_json(self) -> dict[str, Any]:
        return {"shot": self.shot, "frames": self.frames, "brightness": round(self.brightness, 2),
                "contrast": round(self.contrast, 2), "motion": round(self.motion, 3), "flow": round(self.flow, 2),
                "flow_dx": round(self.flow_dx, 3), "flow_dy": round(self.flow_dy, 3),
                "moving": round(self.moving, 4), "colours": [[c, round(s, 3)] for c, s in self.colours],
                "mover_colour": self.mover_colour}


def dominant_colours(rgb: np.ndarray, k: int = 3, min_share: float = 0.08) -> list[tuple[str, float]]:
    """The palette names covering most pixels (nearest colour per pixel), largest first."""
    px = rgb.reshape(-1, 3).astype(np.float32)
    if len(px) > 20000:
        px = px[:: len(px) // 20000]
    d = ((px[:, None, :] - _RGB[None, :, :]) ** 2).sum(-1)
    counts = np.bincount(d.argmin(1), minlength=len(_NAMES)) / len(px)
    order = np.argsort(-counts, kind="stable")
    return [(_NAMES[i], float(counts[i])) for i in order[:k] if counts[i] >= min_share]


def direction_word(dx: float, dy: float) -> str:
    """Eight compass-like words for a unit direction in image coordinates (+y is down)."""
    if math.hypot(dx, dy) < 0.3:
        return "in several directions"
    ang = math.degrees(math.atan2(-dy, dx)) % 360
    words = ["right", "up and to the right", "up", "up and to the left", "left", "down and to the left", "down",
             "down and to the right"]
    return words[int(((ang + 22.5) % 360) // 45)]


def measure_shots(frames: list[tuple[float, Any]], shots: list[Any], scale: float) -> list[ShotMeasure]:
    """``frames``: (t, PIL image) sampled over the video; ``scale``: original width / sampled width."""
    import cv2

    out = []
    for s in shots:
        mine = [(t, np.asarray(im.convert("RGB"))) for t, im in frames if s.t0 - 1e-6 <= t < s.t1 - 1e-6]
        if not mine:
            out.append(ShotMeasure(s.index, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, []))
            continue
        greys = [cv2.cvtColor(a, cv2.COLOR_RGB2GRAY) for _, a in mine]
        bright = float(np.mean([g.mean() for g in greys]))
        contrast = float(np.mean([g.std() for g in greys]))
        diffs, speeds, dirs, moving = [], [], [], []
        mover_px: list[np.ndarray] = []
        # the shot's median frame: its background where the camera stands still (things that
        # move are elsewhere in most frames); what differs from it is foreground
        median = np.median(np.stack([a for _, a in mine]).astype(np.int16), axis=0) if len(mine) >= 3 else None
        for (t0, a0), (t1, _), g0, g1 in zip(mine, mine[1:], greys, greys[1:], strict=False):
            dt = max(t1 - t0, 1e-3)
            diffs.append(float(np.abs(g1.astype(np.int16) - g0.astype(np.int16)).mean()))
            flow = cv2.calcOpticalFlowFarneback(g0, g1, None, 0.5, 3, 15, 3, 5, 1.2, 0)
            mag = np.hypot(flow[..., 0], flow[..., 1])
            mask = mag > 2.0  # sampled-frame pixels per step: codec noise stays below
            moving.append(float(mask.mean()))
            if median is not None:
                fg = np.abs(a0.astype(np.int16) - median).sum(-1) > 60  # flow is on the first frame's pixels
                if (mask & fg).sum() >= 8 and fg.mean() < 0.5:  # a still camera: what moves is the foreground
                    mask = mask & fg
            if mask.sum() >= 8:
                speeds.append(float(np.median(mag[mask])) * scale / dt)
                # resultant over moving pixels: one coherent direction stays near 1, scatter near 0
                dirs.append(flow[mask].sum(0) / mag[mask].sum())
                mover_px.append(a0[mask])
        d = np.mean(dirs, 0) if dirs else np.zeros(2)
        mid = mine[len(mine) // 2][1]
        mover = dominant_colours(np.concatenate(mover_px), k=1, min_share=0.3) if mover_px else []
        out.append(ShotMeasure(s.index, len(mine), bright, contrast, float(np.mean(diffs)) if diffs else 0.0,
                               float(np.median(speeds)) if speeds else 0.0, float(d[0]), float(d[1]),
                               float(np.mean(moving)) if moving else 0.0, dominant_colours(mid),
                               mover[0][0] if mover else None))
    return out

"""Geometry as pure functions: 2x3 affine matrices in continuous pixel coordinates.

A pixel ``(i, j)`` covers ``[i, i+1) x [j, j+1)``; a box ``[x0, y0, x1, y1]`` is in the same
continuous coordinates. Every geometric op is a matrix ``M`` (output <- input); ops compose by
matrix product, the image is warped once, and the same ``M`` moves every annotation:
points are mapped, polygons have their vertices mapped, boxes are re-fitted to their four
mapped corners. Then everything is clipped to the output image; an annotation that ends up
entirely outside is dropped (``None``), never silently moved.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["identity", "scale", "translate", "hflip", "rotate", "compose", "apply_points", "transform_annotations",
           "box_inside", "clip_polygon"]


def identity() -> np.ndarray:
    return np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def _h(m: np.ndarray) -> np.ndarray:
    return np.vstack([m, [0.0, 0.0, 1.0]])


def compose(*ms: np.ndarray) -> np.ndarray:
    """``compose(a, b)`` applies ``a`` first, then ``b``."""
    out = np.eye(3)
    for m in ms:
        out = _h(m) @ out
    return out[:2]


def scale(sx: float, sy: float) -> np.ndarray:
    return np.array([[sx, 0.0, 0.0], [0.0, sy, 0.0]])


def translate(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty]])


def hflip(width: float) -> np.ndarray:
    return np.array([[-1.0, 0.0, width], [0.0, 1.0, 0.0]])


def rotate(degrees: float, cx: float, cy: float) -> np.ndarray:
    """Rotate by ``degrees`` (counter-clockwise on screen) about ``(cx, cy)``."""
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    return compose(translate(-cx, -cy), np.array([[c, s, 0.0], [-s, c, 0.0]]), translate(cx, cy))


def apply_points(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    return pts @ m[:, :2].T + m[:, 2]


def clip_polygon(points: np.ndarray, w: float, h: float) -> list[tuple[float, float]]:
    """Sutherland-Hodgman: the part of a polygon inside ``[0, w] x [0, h]``."""
    poly = [tuple(map(float, p)) for p in points]
    for axis, bound, keep_below in ((0, 0.0, False), (0, w, True), (1, 0.0, False), (1, h, True)):
        if not poly:
            break
        def inside(q: tuple[float, float], a: int = axis, b: float = bound, below: bool = keep_below) -> bool:
            return q[a] <= b if below else q[a] >= b

        out: list[tuple[float, float]] = []
        for i, cur in enumerate(poly):
            prev = poly[i - 1]
            if inside(cur) != inside(prev):
                t = (bound - prev[axis]) / (cur[axis] - prev[axis])
                out.append((prev[0] + t * (cur[0] - prev[0]), prev[1] + t * (cur[1] - prev[1])))
            if inside(cur):
                out.append(cur)
        poly = out
    return poly


def box_inside(box: list[float], w: float, h: float) -> bool:
    return box[0] >= 0 and box[1] >= 0 and box[2] <= w and box[3] <= h


def _clip_box(b: np.ndarray, w: float, h: float) -> list[float] | None:
    x0, y0, x1, y1 = max(0.0, b[0]), max(0.0, b[1]), min(w, b[2]), min(h, b[3])
    if x1 <= x0 or y1 <= y0:
        return None
    return [round(float(x0), 3), round(float(y0), 3), round(float(x1), 3), round(float(y1), 3)]


def transform_annotations(anns: list[dict[str, Any] | None], m: np.ndarray, w: float, h: float,
                          media: int | None = 0) -> list[dict[str, Any] | None]:
    """Move the annotations of media item ``media`` (``None``: all of them) by ``m`` into a
    ``w`` x ``h`` image."""
    out: list[dict[str, Any] | None] = []
    for a in anns:
        if a is None or (media is not None and a.get("media", 0) != media):
            out.append(a)
            continue
        a = dict(a)
        if a.get("type") == "box":
            x0, y0, x1, y1 = a["xyxy"]
            c = apply_points(m, np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]))
            box = _clip_box(np.array([c[:, 0].min(), c[:, 1].min(), c[:, 0].max(), c[:, 1].max()]), w, h)
            if box is None:
                out.append(None)
                continue
            a["xyxy"] = box
        elif a.get("type") == "point":
            x, y = apply_points(m, np.array([a["xy"]]))[0]
            if not (0 <= x <= w and 0 <= y <= h):
                out.append(None)
                continue
            a["xy"] = [round(float(x), 3), round(float(y), 3)]
        elif a.get("type") == "polygon":
            p = apply_points(m, np.array(a["points"]))
            if p[:, 0].max() < 0 or p[:, 1].max() < 0 or p[:, 0].min() > w or p[:, 1].min() > h:
                out.append(None)
                continue
            clipped = clip_polygon(p, w, h)
            if len(clipped) < 3:
                out.append(None)
                continue
            a["points"] = [[round(float(x), 3), round(float(y), 3)] for x, y in clipped]
        out.append(a)
    return out

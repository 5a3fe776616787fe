"""The shapes generator: deterministic, with boxes that match the pixels."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from datalake.sample import PLACEHOLDER_RE
from synth.shapes import COLOURS, render_shapes


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    assert render_shapes(3, 7).jpeg == render_shapes(3, 7).jpeg
    assert render_shapes(3, 7).jpeg != render_shapes(4, 7).jpeg
    assert render_shapes(3, 7).jpeg != render_shapes(3, 8).jpeg


def overlaps(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_boxes_hold_their_shape_colour_and_placeholders_match() -> None:
    checked = 0
    for i in range(30):
        im = render_shapes(0, i, (200, 150), noise=0)
        refs = [int(m.group(2)) for m in PLACEHOLDER_RE.finditer(im.caption)]
        assert refs == list(range(len(im.boxes)))
        assert "{box:" not in im.plain_caption() and im.plain_caption().startswith("An image of ")
        px = np.asarray(Image.open(io.BytesIO(im.jpeg)).convert("RGB")).astype(int)
        for j, (box, label) in enumerate(zip(im.boxes, im.labels, strict=True)):
            x0, y0, x1, y1 = box
            assert 0 <= x0 < x1 <= 200 and 0 <= y0 < y1 <= 150
            if any(overlaps(box, other) for k, other in enumerate(im.boxes) if k != j):
                continue  # may be hidden under another shape
            centre = px[(y0 + y1) // 2 + (y1 - y0) // 8, (x0 + x1) // 2]  # a bit low: inside triangles too
            assert np.abs(centre - np.array(COLOURS[label.split()[1]])).max() < 40, (i, label, centre)
            checked += 1
    assert checked > 20

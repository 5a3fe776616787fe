"""Draws docs/images/synth-gallery.png: one sample of each synthetic generator with its ground
truth geometry drawn over it (line polygons, table cells) and its question/answer.

    .venv/bin/python docs/gallery.py
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from synth.run import GENERATORS  # noqa: E402
from synth.text import find_fonts  # noqa: E402

TILE = (420, 300)


def tile(sample) -> Image.Image:  # type: ignore[no-untyped-def]
    name = sample.media[0].name
    img = Image.open(io.BytesIO(sample.blobs[name])).convert("RGB")
    d = ImageDraw.Draw(img)
    for a in sample.annotations:
        if a.role == "ocr_line" and a.points:
            d.polygon([tuple(p) for p in a.points], outline=(230, 40, 40), width=2)
        elif a.role == "table_cell" and a.xyxy:
            d.rectangle(a.xyxy, outline=(230, 40, 40), width=1)
    img.thumbnail((TILE[0], TILE[1] - 44))
    out = Image.new("RGB", TILE, "white")
    out.paste(img, ((TILE[0] - img.width) // 2, 0))
    fonts = find_fonts()
    font = ImageFont.truetype((fonts["cjk"] or [f for f in fonts["latin"] if f.endswith("DejaVuSans.ttf")])[0], 13)
    if sample.messages:
        first = f"{sample.meta['generator']}  ->  A: {sample.messages[1].content[0].text}"
        second = f"Q: {sample.messages[0].content[-1].text}"
    else:
        first = f"{sample.meta['generator']}  ({sample.meta.get('font')}, {sample.meta.get('font_size')} px)"
        second = sample.content[-1].text.split("\n")[0]
    d = ImageDraw.Draw(out)
    d.text((6, TILE[1] - 40), first[:64], font=font, fill=(90, 90, 90))
    d.text((6, TILE[1] - 22), second[:62], font=font, fill=(0, 0, 0))
    return out


def main() -> None:
    names = ["text", "handwriting", "text-cjk", "html-table", "chart", "geometry"]
    tiles = []
    for i, name in enumerate(names):
        tiles.append(tile(next(GENERATORS[name].make(3, [i + 10], True, {}))))
    cols = 3
    sheet = Image.new("RGB", (cols * TILE[0] + (cols + 1) * 8, 2 * TILE[1] + 24), (235, 238, 243))
    for k, t in enumerate(tiles):
        sheet.paste(t, (8 + (k % cols) * (TILE[0] + 8), 8 + (k // cols) * (TILE[1] + 8)))
    out = Path(__file__).parent / "images" / "synth-gallery.png"
    sheet.save(out, optimize=True)
    print(out)


if __name__ == "__main__":
    main()

"""Tables rendered as web pages: generated data laid out with HTML/CSS in headless Chromium.

Each table gets a random style (fonts, borders, zebra rows, header colours, padding, alignment,
a caption) and is screenshotted as an image. The ground truth is exact: the cell values come
from the generating data, and every cell's box is read from the browser's layout
(``getBoundingClientRect``), so annotations (``role="table_cell"``, ``attrs.row/col``) sit where
the pixels are. Questions are answered from the data (a cell, a column total, the row with the
largest total, the column with the smallest mean), never read back from the image.

Chromium is Debian's ``/usr/bin/chromium`` (or ``MMLAKE_CHROMIUM``), driven through
Playwright; nothing is downloaded. One browser serves a whole batch of tables.
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from datalake.sample import Annotation, Media, MediaPart, Message, Sample, Source, TextPart

__all__ = ["chromium_path", "html_table_samples", "table_html", "TableUnavailable"]

FONTS = ("DejaVu Sans", "DejaVu Serif", "Liberation Sans", "Liberation Serif", "Liberation Mono", "sans-serif")
ITEMS = ("apples", "pears", "plums", "grapes", "lemons", "figs", "limes", "cherries", "melons", "kiwis",
         "dates", "peaches")
COLUMN_SETS = (("Q1", "Q2", "Q3", "Q4"), ("Jan", "Feb", "Mar"), ("North", "South", "East", "West"),
               ("2021", "2022", "2023"), ("Price", "Stock", "Sold"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--font-render-hinting=none"]


class TableUnavailable(RuntimeError):
    """Playwright or Chromium is missing; the message says what to install."""


def chromium_path() -> str:
    return os.environ.get("MMLAKE_CHROMIUM", "/usr/bin/chromium")


def unavailable_reason() -> str | None:
    """Why HTML tables cannot be rendered here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "html tables need Playwright: pip install 'mmlake[ocr]'"
    if not Path(chromium_path()).exists():
        return f"html tables need Chromium at {chromium_path()}: apt-get install chromium (or set MMLAKE_CHROMIUM)"
    return None


def table_html(seed: int, index: int) -> tuple[str, dict[str, Any]]:
    """The page and the generating data of table ``index``: a pure function of the seed."""
    rng = np.random.default_rng([seed, index, 0x4711])
    cols = list(COLUMN_SETS[int(rng.integers(len(COLUMN_SETS)))])
    names = [ITEMS[int(i)] for i in rng.permutation(len(ITEMS))[: int(rng.integers(3, 9))]]
    rows = [[n] + [int(v) for v in rng.integers(1, 1000, len(cols))] for n in names]
    font = FONTS[int(rng.integers(len(FONTS)))]
    size = int(rng.integers(13, 22))
    pad = int(rng.integers(3, 12))
    hue = int(rng.integers(0, 360))
    border = ["1px solid #333", "none", "2px solid #555", "1px dashed #777"][int(rng.integers(4))]
    zebra = bool(rng.random() < 0.5)
    align = ["right", "left", "center"][int(rng.integers(3))]
    caption = f"Table {index + 1}: {['Sales', 'Stock', 'Orders', 'Returns'][int(rng.integers(4))]} by item"
    css = (f"body{{margin:0;background:#fff}} table{{border-collapse:collapse;font-family:'{font}';font-size:{size}px;"
           f"margin:12px}} caption{{padding:4px;font-weight:bold;text-align:left}} td,th{{padding:{pad}px {pad + 4}px;"
           f"border:{border}}} th{{background:hsl({hue},45%,82%)}} td.n{{text-align:{align}}}"
           + (f" tbody tr:nth-child(even){{background:hsl({hue},30%,95%)}}" if zebra else ""))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["Item", *cols])
    body = "".join("<tr>" + f"<td>{html.escape(r[0])}</td>" + "".join(f'<td class="n">{v}</td>' for v in r[1:])
                   + "</tr>" for r in rows)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><style>{css}</style></head><body>"
            f"<table id='t'><caption>{html.escape(caption)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table></body></html>")
    return page, {"columns": ["Item", *cols], "rows": rows, "caption": caption,
                  "style": {"font": font, "font_px": size, "border": border, "zebra": zebra}}


def _question(seed: int, index: int, data: dict[str, Any]) -> tuple[str, str]:
    rng = np.random.default_rng([seed, index, 0x4712])
    cols, rows = data["columns"], data["rows"]
    which = int(rng.integers(4))
    if which == 0:
        i, j = int(rng.integers(len(rows))), int(rng.integers(1, len(cols)))
        return f"What is the {cols[j]} value for {rows[i][0]}?", str(rows[i][j])
    if which == 1:
        j = int(rng.integers(1, len(cols)))
        return f"What is the total of the {cols[j]} column?", str(sum(r[j] for r in rows))
    if which == 2:
        best = max(rows, key=lambda r: (sum(r[1:]), r[0]))
        return f"Which item has the largest total over {cols[1]}-{cols[-1]}?", str(best[0])
    means = [(sum(r[j] for r in rows) / len(rows), cols[j]) for j in range(1, len(cols))]
    return "Which column has the smallest average?", min(means)[1]


def html_table_samples(indices: Iterable[int], seed: int = 0) -> Iterator[Sample]:
    """``knowledge`` samples of tables rendered by Chromium, one browser for the batch."""
    why = unavailable_reason()
    if why:
        raise TableUnavailable(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800}, device_scale_factor=1)
            for index in indices:
                doc, data = table_html(seed, index)
                page.set_content(doc)
                table = page.locator("#t")
                box = table.bounding_box()
                png = table.screenshot(type="png", animations="disabled")
                cells = page.evaluate("""() => Array.from(document.querySelectorAll('#t tr')).map(
                    tr => Array.from(tr.children).map(c => {const r = c.getBoundingClientRect();
                    return [c.innerText, r.left, r.top, r.right, r.bottom]; }))""")
                yield _sample(seed, index, png, box, cells, data)
        finally:
            browser.close()


def _sample(seed: int, index: int, png: bytes, box: dict[str, float] | None, cells: list[list[list[Any]]],
            data: dict[str, Any]) -> Sample:
    import io

    from PIL import Image

    w, h = Image.open(io.BytesIO(png)).size
    ox, oy = (box or {}).get("x", 0.0), (box or {}).get("y", 0.0)
    want = [data["columns"]] + [[str(v) for v in r] for r in data["rows"]]
    anns = []
    for r, row in enumerate(cells):
        for c, (text, x0, y0, x1, y1) in enumerate(row):
            if text.strip() != str(want[r][c]):  # the layout must show exactly the data
                raise ValueError(f"table {index}: cell ({r}, {c}) shows {text!r}, expected {want[r][c]!r}")
            anns.append(Annotation(0, "box", xyxy=(max(0.0, x0 - ox), max(0.0, y0 - oy), min(w, x1 - ox),
                                                   min(h, y1 - oy)), text=str(want[r][c]), role="table_cell",
                                   attrs={"row": r, "col": c}))
    q, ans = _question(seed, index, data)
    markdown = "\n".join("| " + " | ".join(str(v) for v in row) + " |" for row in want)
    return Sample(
        key=f"htmltable{index:06d}", kind="knowledge", source=Source(f"synth://html-table/{seed}/{index}", "CC0-1.0"),
        media=(Media("0.png", "image/png", w, h),),
        messages=(Message("user", (MediaPart(0), TextPart(q))), Message("assistant", (TextPart(ans),))),
        annotations=tuple(anns),
        meta={"synthetic": True, "generator": "synth.web.html_table",
              "truth": {**data, "markdown": markdown, "answer": ans}},
        blobs={"0.png": png})

"""Synthetic knowledge data with answers computed exactly from the generating data:
geometry diagrams (a random triangle with its incircle or a labelled angle), bar/line/pie/
scatter charts (matplotlib, with the data table), and tables (rendered cells, QA over values).

Each generator is seeded and pure (``seed``, ``index``) and returns a ``datalake.Sample``
(``kind="knowledge"``, ``meta.synthetic = true``, the ground truth in ``meta.truth``) whose
conversation asks a question and answers it; the answer is computed, never read back.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from datalake.sample import Media, MediaPart, Message, Sample, Source, TextPart

__all__ = ["geometry_sample", "chart_sample", "table_sample", "knowledge_samples", "GENERATORS"]


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    from synth.text import find_fonts

    fonts = [f for f in find_fonts()["latin"] if f.endswith("DejaVuSans.ttf")] or find_fonts()["latin"]
    return ImageFont.truetype(fonts[0], size) if fonts else ImageFont.load_default()


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _sample(kind_key: str, seed: int, index: int, img: Image.Image, question: str, answer: str,
            truth: dict[str, Any]) -> Sample:
    data = _jpeg(img)
    return Sample(
        key=f"{kind_key}{index:06d}", kind="knowledge", source=Source(f"synth://{kind_key}/{seed}/{index}", "CC0-1.0"),
        media=(Media("0.png", "image/png", img.width, img.height),),
        messages=(Message("user", (MediaPart(0), TextPart(question))), Message("assistant", (TextPart(answer),))),
        meta={"synthetic": True, "generator": f"synth.knowledge.{kind_key}", "truth": truth},
        blobs={"0.png": data})


def geometry_sample(seed: int, index: int, size: int = 448) -> Sample:
    """A geometry figure with its measures written on it: a triangle ABC with integer sides
    (an angle, the area or the perimeter: law of cosines, Heron), a circle with its radius
    (area, circumference, diameter) or a regular polygon with its side (perimeter, interior
    angle, number of sides) -- every answer computed exactly from what the figure shows."""
    rng = np.random.default_rng([seed, index, 0x6E0])
    shape = ("triangle", "circle", "polygon")[int(rng.integers(3))]
    if shape == "circle":
        return _circle_sample(seed, index, size, rng)
    if shape == "polygon":
        return _polygon_sample(seed, index, size, rng)
    while True:
        a, b, c = (int(x) for x in rng.integers(3, 16, 3))
        if a + b > c and a + c > b and b + c > a:
            break
    # place B=(0,0), C=(a,0), A from b (=CA) and c (=AB)
    ax = (c * c - b * b + a * a) / (2 * a)
    ay = math.sqrt(max(c * c - ax * ax, 0.0))
    pts = np.array([[ax, ay], [0.0, 0.0], [float(a), 0.0]])  # A, B, C
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    s = (size - 120) / max(hi - lo)
    xy = (pts - lo) * s + 60
    xy[:, 1] = size - xy[:, 1]  # y up
    img = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(img)
    d.polygon([tuple(p) for p in xy], outline=(20, 20, 20), width=3)
    f = _font(22)
    for name, p in zip("ABC", xy, strict=True):
        cen = xy.mean(axis=0)
        v = p - cen
        q = p + v / max(1e-6, np.linalg.norm(v)) * 22
        d.text((q[0] - 7, q[1] - 12), name, font=f, fill=(0, 0, 160))
    for (i, j), length in (((1, 2), a), ((0, 2), b), ((0, 1), c)):
        m = (xy[i] + xy[j]) / 2
        d.text((m[0] + 6, m[1] + 4), str(length), font=_font(18), fill=(160, 0, 0))
    angle_a = math.degrees(math.acos((b * b + c * c - a * a) / (2 * b * c)))
    p = (a + b + c) / 2
    area = math.sqrt(p * (p - a) * (p - b) * (p - c))
    which = int(rng.integers(3))
    if which == 0:
        q, ans = "What is the angle at A, in degrees (to one decimal)?", f"{angle_a:.1f}"
    elif which == 1:
        q, ans = "What is the area of triangle ABC (to two decimals)?", f"{area:.2f}"
    else:
        q, ans = "What is the perimeter of triangle ABC?", str(a + b + c)
    return _sample("geometry", seed, index, img, q, ans,
                   {"shape": "triangle", "sides": {"BC": a, "CA": b, "AB": c}, "angle_A": angle_a, "area": area,
                    "answer": ans, "evidence": [str(a), str(b), str(c)]})


def _circle_sample(seed: int, index: int, size: int, rng: np.random.Generator) -> Sample:
    r = int(rng.integers(2, 20))
    img = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(img)
    c, rad = size / 2, size * 0.36
    d.ellipse((c - rad, c - rad, c + rad, c + rad), outline=(20, 20, 20), width=3)
    d.line((c, c, c + rad, c), fill=(160, 0, 0), width=3)
    d.ellipse((c - 4, c - 4, c + 4, c + 4), fill=(20, 20, 20))
    d.text((c + rad / 2 - 18, c - 34), f"r = {r}", font=_font(24), fill=(160, 0, 0))
    which = int(rng.integers(3))
    if which == 0:
        q, ans = "What is the area of the circle (to two decimals)?", f"{math.pi * r * r:.2f}"
    elif which == 1:
        q, ans = "What is the circumference of the circle (to two decimals)?", f"{2 * math.pi * r:.2f}"
    else:
        q, ans = "What is the diameter of the circle?", str(2 * r)
    return _sample("geometry", seed, index, img, q, ans,
                   {"shape": "circle", "radius": r, "answer": ans, "evidence": [str(r)]})


def _polygon_sample(seed: int, index: int, size: int, rng: np.random.Generator) -> Sample:
    n, side = int(rng.integers(5, 9)), int(rng.integers(2, 15))
    img = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(img)
    c, rad = size / 2, size * 0.34
    pts = [(c + rad * math.cos(2 * math.pi * k / n - math.pi / 2), c + rad * math.sin(2 * math.pi * k / n - math.pi / 2))
           for k in range(n)]
    d.polygon(pts, outline=(20, 20, 20), width=3)
    (x0, y0), (x1, y1) = pts[0], pts[1]
    d.text(((x0 + x1) / 2 + 10, (y0 + y1) / 2 - 26), str(side), font=_font(24), fill=(160, 0, 0))
    d.text((12, size - 40), f"regular polygon, side {side}", font=_font(20), fill=(0, 0, 160))
    which = int(rng.integers(3))
    if which == 0:
        q, ans = "What is the perimeter of the regular polygon?", str(n * side)
    elif which == 1:
        q, ans = "What is each interior angle of the regular polygon, in degrees (to one decimal)?", \
            f"{180 * (n - 2) / n:.1f}"
    else:
        q, ans = "How many sides does the polygon have?", str(n)
    return _sample("geometry", seed, index, img, q, ans,
                   {"shape": "polygon", "sides": n, "side": side, "answer": ans, "evidence": [str(side)]})


def chart_sample(seed: int, index: int, size: tuple[int, int] = (512, 384)) -> Sample:
    """A bar, line, pie or scatter chart of generated data; QA on max, min, difference, trend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng([seed, index, 0xC4A])
    kind = ["bar", "line", "pie", "scatter"][int(rng.integers(4))]
    n = int(rng.integers(4, 8))
    labels = [chr(ord("A") + i) for i in range(n)] if kind != "line" else [str(2015 + i) for i in range(n)]
    values = [int(v) for v in rng.choice(np.arange(5, 100), n, replace=False)]  # distinct: no tied max/min
    if kind == "pie":  # the pie shows rounded shares, not values: those must be distinct too
        while len(set(_pie_labels(values))) < n:
            values = [int(v) for v in rng.choice(np.arange(5, 100), n, replace=False)]
    fig, ax = plt.subplots(figsize=(size[0] / 100, size[1] / 100), dpi=100)
    if kind == "bar":
        ax.bar(labels, values, color="#4472c4")
        for i, v in enumerate(values):
            ax.text(i, v + 1, str(v), ha="center", fontsize=8)
    elif kind == "line":
        ax.plot(labels, values, marker="o")
        for i, v in enumerate(values):
            ax.annotate(str(v), (i, v), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=8)
    elif kind == "pie":
        ax.pie(values, labels=labels, autopct=lambda pc: f"{pc:.0f}%")  # what _pie_labels computes
    else:
        xs = [int(v) for v in rng.integers(0, 50, n)]
        ax.scatter(xs, values)
        for x, v, lab in zip(xs, values, labels, strict=True):
            ax.annotate(f"{lab}({x},{v})", (x, v), fontsize=9)
    ax.set_title(f"Series {index}")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    imax, imin = int(np.argmax(values)), int(np.argmin(values))
    q_kind = int(rng.integers(3))
    evidence = list(labels)
    if kind == "pie":  # only the shares are on the figure: ask about them, never about raw values
        shares = _pie_labels(values)
        evidence = list(labels)
        if q_kind == 0:
            q, ans = "Which label has the largest share?", labels[imax]
        elif q_kind == 1:
            j = int(rng.integers(n))
            q, ans = f"What share of the whole is {labels[j]}, as shown on the chart?", shares[j]
            evidence = [labels[j], shares[j]]
        else:
            diff = int(shares[imax].rstrip("%")) - int(shares[imin].rstrip("%"))
            q, ans = (f"By how many percentage points does the share of {labels[imax]} exceed that of "
                      f"{labels[imin]}?"), str(diff)
            evidence = [shares[imax], shares[imin]]
    elif kind == "line" and q_kind == 2:
        diffs = np.diff(values)
        trend = "increasing" if (diffs > 0).all() else "decreasing" if (diffs < 0).all() else "mixed"
        q, ans = "Is the series increasing, decreasing or mixed?", trend
    elif q_kind == 0:
        q, ans = "Which label has the largest value?", labels[imax]
    elif q_kind == 1:
        q, ans = "Which label has the smallest value?", labels[imin]
    else:
        q, ans = f"What is the difference between the values of {labels[imax]} and {labels[imin]}?", \
            str(values[imax] - values[imin])
        evidence = [str(values[imax]), str(values[imin])]
    table = "\n".join(f"{lab}: {v}" for lab, v in zip(labels, values, strict=True))
    return _sample("chart", seed, index, img, q, ans,
                   {"chart": kind, "labels": labels, "values": values, "table": table, "answer": ans,
                    "evidence": evidence})


def _pie_labels(values: list[int]) -> list[str]:
    """The percentages matplotlib's ``autopct`` prints on a pie of ``values``."""
    x = np.asarray(values, dtype=float)
    return [f"{pc:.0f}%" for pc in 100.0 * x / x.sum()]


def table_sample(seed: int, index: int) -> Sample:
    """A rendered table of generated numbers; QA: a cell, a column sum, the row with the max."""
    rng = np.random.default_rng([seed, index, 0x7AB])
    cols = ["Item", "Q1", "Q2", "Q3"]
    names = ["apples", "pears", "plums", "grapes", "lemons", "figs", "limes"]
    rows = [[names[i]] + [int(v) for v in rng.integers(1, 500, 3)] for i in range(int(rng.integers(3, 7)))]
    totals = [sum(r[1:]) for r in rows]
    while totals.count(max(totals)) > 1:  # a tied best row has no single answer: re-draw the last row
        rows[-1] = [rows[-1][0]] + [int(v) for v in rng.integers(1, 500, 3)]
        totals = [sum(r[1:]) for r in rows]
    f = _font(18)
    cw, rh = 110, 34
    img = Image.new("RGB", (cw * len(cols) + 2, rh * (len(rows) + 1) + 2), "white")
    d = ImageDraw.Draw(img)
    for r, row in enumerate([cols] + rows):
        for c, val in enumerate(row):
            x, y = c * cw, r * rh
            d.rectangle([x, y, x + cw, y + rh], outline=(0, 0, 0), fill=(225, 230, 240) if r == 0 else None)
            d.text((x + 8, y + 7), str(val), font=f, fill=(0, 0, 0))
    which = int(rng.integers(3))
    if which == 0:
        i, j = int(rng.integers(len(rows))), int(rng.integers(1, 4))
        q, ans = f"What is the {cols[j]} value for {rows[i][0]}?", str(rows[i][j])
        evidence = [rows[i][0], str(rows[i][j])]
    elif which == 1:
        j = int(rng.integers(1, 4))
        q, ans = f"What is the total of column {cols[j]}?", str(sum(r[j] for r in rows))
        evidence = [str(r[j]) for r in rows]
    else:
        best = max(rows, key=lambda r: sum(r[1:]))
        q, ans = "Which item has the largest total over Q1-Q3?", str(best[0])
        evidence = [str(v) for r in rows for v in r]
    return _sample("table", seed, index, img, q, ans, {"columns": cols, "rows": rows, "answer": ans,
                                                      "evidence": evidence})


def evidence_visible(sample: Sample, engine: Any) -> tuple[bool, list[str]]:
    """OCR the rendered figure and check that every string the answer rests on
    (``meta.truth.evidence``: the numbers and labels a reader needs) is legible in it.
    Returns (all visible, the missing ones)."""
    lines = engine(np.asarray(Image.open(io.BytesIO(sample.blobs[sample.media[0].name])).convert("RGB")))
    seen = " ".join(ln.text for ln in lines).replace(" ", "")
    missing = [e for e in sample.meta["truth"].get("evidence", []) if e.replace(" ", "") not in seen]
    return not missing, missing


GENERATORS = {"geometry": geometry_sample, "chart": chart_sample, "table": table_sample}


def knowledge_samples(n: int, seed: int = 0, kinds: tuple[str, ...] = ("geometry", "chart", "table")) -> list[Sample]:
    return [GENERATORS[kinds[i % len(kinds)]](seed, i) for i in range(n)]

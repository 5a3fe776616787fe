"""Reading order and near-duplicate clusters on real layouts and real images, order-sensitive.

    .venv/bin/python benchmarks/layout.py [--skip-ocr]

1. OCR of multi-column pages (born-digital PDFs with a known reading order, rendered at
   150 dpi) and of a real Debian manual page: CER (edit distance / reference characters,
   whitespace-normalised -- order-sensitive) of the ``ocr`` stage's text, of the same engine's
   lines sorted top-to-bottom (the order before the layout module), of rapidocr's raw output,
   and of bare ``pytesseract.image_to_string``.
2. PDF text layers of Debian manuals (bash-doc, libtasn1-doc, shared-mime-info) against
   poppler's ``pdftotext``: word precision and CER, ours vs the fixed 4-px row bucketing before.
3. Near-duplicate images: planted families on real photos (scikit-image and matplotlib sample
   data) against look-alikes (tricolour flags, Adwaita icons, pages of one manual): pair
   precision and recall per transformation, star clusters with colour vs grey pHash with
   connected components; and crowded band buckets (hashes sharing a 16-bit part).
"""

from __future__ import annotations

import argparse
import collections
import io
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_THREAD_LIMIT", "1")

from pipelines.ocr.quality import cer  # noqa: E402
from synth.layout import layout_pdf  # noqa: E402

MANUALS = [Path("/usr/share/doc/bash/bash.pdf"), Path("/usr/share/doc/libtasn1-doc/libtasn1.pdf"),
           Path("/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf")]


def top_to_bottom(lines: list) -> list:
    """The order before the layout module: rows by vertical centre, then x."""
    items = sorted(lines, key=lambda ln: (ln.bbox[1] + ln.bbox[3]) / 2)
    rows: list[list] = []
    for ln in items:
        cy, hh = (ln.bbox[1] + ln.bbox[3]) / 2, (ln.bbox[3] - ln.bbox[1]) / 2
        if rows and abs(cy - np.mean([(a.bbox[1] + a.bbox[3]) / 2 for a in rows[-1]])) <= max(hh, 2.0):
            rows[-1].append(ln)
        else:
            rows.append([ln])
    return [ln for r in rows for ln in sorted(r, key=lambda a: a.bbox[0])]


def _ws(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def pdftotext(path: Path, page: int | None = None, layout: bool = False) -> str:
    args = (["pdftotext"] + (["-layout"] if layout else []) + (["-f", str(page + 1), "-l", str(page + 1)] if page is not None else [])
            + [str(path), "-"])
    return re.sub(r"-\n(?=[a-z])", "", subprocess.run(args, capture_output=True, text=True, check=True).stdout)


def ocr_table() -> None:
    import pypdfium2 as pdfium
    import pytesseract

    from pipelines.ocr.engines import make_engine

    engines = {n: make_engine(n, threads=1) for n in ("rapidocr", "tesseract")}
    for e in engines.values():
        e.load()
    pages = []
    with tempfile.TemporaryDirectory() as tmp:
        for cols, side in ((1, False), (2, False), (3, False), (2, True)):
            p = Path(tmp) / f"p{cols}{side}.pdf"
            truth = layout_pdf(p, cols, sidebar=side, lines=24, seed=cols)
            img = pdfium.PdfDocument(str(p))[0].render(scale=150 / 72).to_pil().convert("RGB")
            pages.append((f"{cols} column{'s' if cols > 1 else ''}" + (" + sidebar" if side else ""), img, truth))
    real = pdfium.PdfDocument(str(MANUALS[0]))[2].render(scale=150 / 72).to_pil().convert("RGB")
    pages = [(n, im, t, None) for n, im, t in pages]
    pages.append(("bash(1) page 3 (real, 1 column)", real, pdftotext(MANUALS[0], 2), None))
    from PIL import Image

    from tests.realdata import linn_fold, linn_scan

    png, ref = linn_scan()
    with Image.open(png) as im:
        g = im.convert("L")
    pages.append(("linn.png (real 1-bit scan, 2 columns, 300 dpi)", g.convert("RGB"), linn_fold(ref), linn_fold))
    pages.append(("linn.png at 150 dpi", g.resize((g.width // 2, g.height // 2), Image.LANCZOS).convert("RGB"),
                  linn_fold(ref), linn_fold))
    print("| page (150 dpi unless said) | rapidocr stage | rapidocr top-to-bottom (before) | rapidocr raw | tesseract stage | "
          "tesseract top-to-bottom (before) | bare pytesseract | rapidocr s/page |")
    print("|---|---|---|---|---|---|---|---|")
    for name, img, truth, fold in pages:
        arr = np.asarray(img)
        row = [name]
        cells = {}
        fold = fold or (lambda t: t)
        for n, e in engines.items():
            t0 = time.perf_counter()
            lines = e(arr)
            cells[f"{n}_s"] = time.perf_counter() - t0
            raw = e.run(arr)
            cells[n] = cer(fold("\n".join(ln.text for ln in lines)), truth)
            cells[f"{n}_before"] = cer(fold("\n".join(ln.text for ln in top_to_bottom(raw))), truth)
            cells[f"{n}_raw"] = cer(fold("\n".join(ln.text for ln in raw)), truth)
        bare = cer(fold(pytesseract.image_to_string(arr)), truth)
        row += [f"**{100 * cells['rapidocr']:.2f} %**", f"{100 * cells['rapidocr_before']:.1f} %",
                f"{100 * cells['rapidocr_raw']:.1f} %", f"**{100 * cells['tesseract']:.2f} %**",
                f"{100 * cells['tesseract_before']:.1f} %", f"{100 * bare:.2f} %", f"{cells['rapidocr_s']:.1f}"]
        print("| " + " | ".join(row) + " |", flush=True)


def old_pdf_text(data: bytes, dpi: int = 72) -> list[str]:
    """The text layer as it was read before: PDFium text rects sorted by (round(y/4), x)."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(data)
    out = []
    for i in range(len(pdf)):
        page = pdf[i]
        tp = page.get_textpage()
        lines = []
        for r in range(tp.count_rects()):
            left, bottom, right, top = tp.get_rect(r)
            t = tp.get_text_bounded(left, bottom, right, top).strip()
            if t:
                lines.append((round((page.get_size()[1] - top) / 4), left, t))
        lines.sort()
        out.append("\n".join(t for _, _, t in lines))
    return out


def pdf_table() -> None:
    from datalake.pdf import render_pdf

    print("| Debian manual | pages | word precision (ours) | CER (ours) | CER vs the nearer of pdftotext / -layout | "
          "pdftotext vs its -layout | word precision (before) | CER (before) | soft-hyphen / control chars (ours / before) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for path in MANUALS:
        data = path.read_bytes()
        ours = [p.text for p in render_pdf(data, dpi=72, max_pages=1000)]
        before = old_pdf_text(data)
        ref = [pdftotext(path, i) for i in range(len(ours))]
        # poppler's physical-layout mode reads tables row by row, its default flow mode often
        # column by column; neither is ground truth, so also: each page against the nearer one
        lay = [pdftotext(path, i, layout=True) for i in range(len(ours))]
        near = [r if cer(_ws(o), _ws(r)) <= cer(_ws(o), _ws(la)) else la for o, r, la in zip(ours, ref, lay, strict=False)]
        row = [path.name, str(len(ours))]
        for texts in (ours, before):
            hyp, r = " ".join(texts), " ".join(ref)
            h, rc = collections.Counter(hyp.split()), collections.Counter(r.split())
            row += [f"{sum((h & rc).values()) / sum(h.values()):.3f}", f"{100 * cer(hyp, r):.2f} %"]
            if texts is ours:
                row += [f"{100 * cer(_ws(' '.join(ours)), _ws(' '.join(near))):.2f} %",
                        f"{100 * cer(_ws(' '.join(ref)), _ws(' '.join(lay))):.2f} %"]
        bad = [sum(len(re.findall("[\x00-\x08\x0b-\x1f\ufffe\xad]", t)) for t in texts) for texts in (ours, before)]
        row.append(f"{bad[0]} / {bad[1]}")
        print("| " + " | ".join(row) + " |", flush=True)


def dedupe_table() -> None:
    import pypdfium2 as pdfium

    from pipelines.dedupe_core import find_pairs
    from pipelines.quality import IMAGE_TRANSFORMS, image_families_quality, tricolour_flags
    from pipelines.stage import build_stage
    from tests.realdata import icon_paths, photo_paths

    photos = [p.read_bytes() for p in photo_paths()]
    pdf = pdfium.PdfDocument(str(MANUALS[0]))
    pages = []
    for i in range(len(pdf)):
        buf = io.BytesIO()
        pdf[i].render(scale=40 / 72).to_pil().convert("RGB").save(buf, "PNG")
        pages.append(buf.getvalue())
    look = {"flags": tricolour_flags(60), "icons": [p.read_bytes() for p in icon_paths("64x64/legacy/*.png")],
            "manual pages": pages}
    n_look = sum(map(len, look.values()))
    print(f"{len(photos)} real photos x {len(IMAGE_TRANSFORMS)} planted copies; look-alikes: "
          + ", ".join(f"{len(v)} {k}" for k, v in look.items()) + f" ({n_look})\n")
    print("| clustering | max_hamming | pair precision | " + " | ".join(IMAGE_TRANSFORMS) + " | largest cluster | "
          "false pairs by kind |")
    print("|---|---|---|" + "---|" * len(IMAGE_TRANSFORMS) + "---|---|")
    for h in (6, 8):
        for label, params, transitive in (("stars, pHash + colour (now)", {"max_hamming": h}, False),
                                          ("components, grey pHash (before)", {"max_hamming": h, "max_colour_distance": None},
                                           True)):
            q = image_families_quality(photos, look, params, transitive=transitive)
            rec = " | ".join(f"{q['recall_by_transform'][t]:.2f}" for t in IMAGE_TRANSFORMS)
            print(f"| {label} | {h} | {q['pair_precision']:.3f} | {rec} | {q['largest_cluster']} | "
                  f"{q['false_pairs_by_kind']} |", flush=True)
    print("\n| hashes sharing one 16-bit part | seconds (median of 3) |")
    print("|---|---|")
    st = build_stage("dedupe_image", {"max_hamming": 6, "max_colour_distance": None})
    rng = np.random.default_rng(0)
    for n in (2000, 4000, 8000):
        sigs = [(int(x) << 16) | int(rng.integers(0, 4)) for x in rng.integers(0, 2**40, n)]
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            find_pairs(st, [r for i, s in enumerate(sigs) for r in st.band_records(i, s)])
            times.append(time.perf_counter() - t0)
        print(f"| {n} | {sorted(times)[1]:.2f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--skip-ocr", action="store_true", help="leave out table 1 (the slowest)")
    args = ap.parse_args()
    if not args.skip_ocr:
        print("\n1. OCR reading order (CER, order-sensitive)\n")
        ocr_table()
    print("\n2. PDF text layer vs pdftotext\n")
    pdf_table()
    print("\n3. near-duplicate images on real data\n")
    dedupe_table()


if __name__ == "__main__":
    main()

"""OCR quality and speed on rendered pages with exact ground truth, per engine and condition.

    .venv/bin/python benchmarks/ocr.py [--pages 3] [--sizes 12 16 24 40]

Pages come from ``synth.text.render_page`` (DejaVu Sans, Serif and Sans Mono -- the fonts
installed here -- at each font size, 640x360, clean or augmented: rotation, perspective,
colour, blur, noise, JPEG). CER is edit distance / reference characters over all pages of a
cell (whitespace-normalised). Speed is pages/s on one core (the process is pinned to CPU 0,
Tesseract with OMP_THREAD_LIMIT=1, ONNX Runtime with one intra-op thread). Writes
``benchmarks/results/ocr.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_THREAD_LIMIT", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from PIL import Image  # noqa: E402

from pipelines.ocr.engines import make_engine  # noqa: E402
from pipelines.ocr.quality import edit_distance, normalise  # noqa: E402
from synth.text import find_fonts, render_page  # noqa: E402

FONTS = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=3, help="pages per font x size x condition")
    ap.add_argument("--sizes", type=int, nargs="+", default=[12, 16, 24, 40])
    ap.add_argument("--engines", nargs="+", default=["rapidocr", "tesseract"])
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    fonts = [f for f in find_fonts()["latin"] if Path(f).name in FONTS]
    pages = {}
    for cond in ("clean", "augmented"):
        for size in args.sizes:
            cell = []
            for fi, font in enumerate(fonts):
                for p in range(args.pages):
                    pg = render_page(7, size * 1000 + fi * 100 + p, size=(640, 360), font=font, font_size=size,
                                     augment=cond == "augmented")
                    cell.append((np.asarray(Image.open(io.BytesIO(pg.jpeg)).convert("RGB")), pg.text))
            pages[(cond, size)] = cell
    results = []
    for name in args.engines:
        eng = make_engine(name)
        eng.load()
        if name == "rapidocr":  # one thread, for a per-core figure
            from rapidocr import RapidOCR

            eng.engine = RapidOCR(params={"Global.log_level": "warning",
                                          "EngineConfig.onnxruntime.intra_op_num_threads": 1})
        for (cond, size), cell in pages.items():
            errs = chars = 0
            t0 = time.perf_counter()
            for img, truth in cell:
                got = "\n".join(ln.text for ln in eng(img))
                errs += edit_distance(normalise(got), normalise(truth))
                chars += len(normalise(truth))
            dt = time.perf_counter() - t0
            results.append({"engine": name, "condition": cond, "font_px": size, "pages": len(cell),
                            "cer": errs / max(1, chars), "pages_per_s_core": len(cell) / dt})
            print(f"{name:10s} {cond:9s} {size:3d}px  CER {100 * errs / max(1, chars):6.2f}%  "
                  f"{len(cell) / dt:5.2f} pages/s", flush=True)
    print("\n| engine | condition | " + " | ".join(f"{s}px CER" for s in args.sizes) + " | pages/s/core |")
    print("|---|---|" + "---|" * (len(args.sizes) + 1))
    for name in args.engines:
        for cond in ("clean", "augmented"):
            rows = [r for r in results if r["engine"] == name and r["condition"] == cond]
            speed = np.median([r["pages_per_s_core"] for r in rows])
            print(f"| {name} | {cond} | " + " | ".join(f"{100 * r['cer']:.2f}%" for r in rows) + f" | {speed:.2f} |")
    out = Path(__file__).parent / "results" / "ocr.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "results": results}, indent=1))


if __name__ == "__main__":
    main()

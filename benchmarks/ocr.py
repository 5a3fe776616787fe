"""OCR quality and speed on rendered pages with exact ground truth, per engine and condition.

    .venv/bin/python benchmarks/ocr.py [--pages 2] [--sizes 12 16 24 32 40] [--scripts latin handwriting cjk]

Pages come from ``synth.text.render_page`` at each font size, 640x360, clean or augmented
(rotation, perspective, colour, blur, noise, JPEG), in three scripts: latin (DejaVu Sans, Serif,
Sans Mono, Liberation Serif), handwriting (Dancing Script, Comic Neue, Breip, Humor Sans) and
cjk (WenQuanYi Micro Hei; rapidocr only -- Tesseract has only English here). CER is edit distance / reference characters over all pages of a
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

FONTS = {"latin": ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "LiberationSerif-Regular.ttf"),
         "handwriting": ("DancingScript-Regular.otf", "ComicNeue-Regular.otf", "Breip.ttf", "Humor-Sans.ttf"),
         "cjk": ("wqy-microhei.ttc",)}
# Tesseract has only its English model here (tesseract-ocr-eng): no CJK row for it
ENGINE_SCRIPTS = {"rapidocr": ("latin", "handwriting", "cjk"), "tesseract": ("latin", "handwriting")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=2, help="pages per font x size x condition")
    ap.add_argument("--sizes", type=int, nargs="+", default=[12, 16, 24, 32, 40])
    ap.add_argument("--engines", nargs="+", default=["rapidocr", "tesseract"])
    ap.add_argument("--scripts", nargs="+", default=["latin", "handwriting", "cjk"])
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    pages = {}
    for script in args.scripts:
        fonts = [f for f in find_fonts()[script] if Path(f).name in FONTS[script]]
        if not fonts:
            print(f"skipping {script}: none of {FONTS[script]} is installed", file=sys.stderr)
            continue
        for cond in ("clean", "augmented"):
            for size in args.sizes:
                cell = []
                for fi, font in enumerate(fonts):
                    for p in range(args.pages):
                        pg = render_page(7, size * 1000 + fi * 100 + p, size=(640, 360), font=font, font_size=size,
                                         augment=cond == "augmented", script=script)
                        cell.append((np.asarray(Image.open(io.BytesIO(pg.jpeg)).convert("RGB")), pg.text))
                pages[(script, cond, size)] = (cell, [Path(f).name for f in fonts])
    results = []
    for name in args.engines:
        eng = make_engine(name, threads=1)  # one thread: a per-core figure
        eng.load()
        for (script, cond, size), (cell, fonts) in pages.items():
            if script not in ENGINE_SCRIPTS[name]:
                continue
            errs = chars = 0
            t0 = time.perf_counter()
            for img, truth in cell:
                got = "\n".join(ln.text for ln in eng(img))
                errs += edit_distance(normalise(got), normalise(truth))
                chars += len(normalise(truth))
            dt = time.perf_counter() - t0
            results.append({"engine": name, "script": script, "condition": cond, "font_px": size, "pages": len(cell),
                            "fonts": fonts, "cer": errs / max(1, chars), "pages_per_s_core": len(cell) / dt})
            print(f"{name:10s} {script:11s} {cond:9s} {size:3d}px  CER {100 * errs / max(1, chars):6.2f}%  "
                  f"{len(cell) / dt:5.2f} pages/s", flush=True)
    print("\n| engine | script | condition | " + " | ".join(f"{s} px" for s in args.sizes) + " | pages/s/core |")
    print("|---|---|---|" + "---|" * (len(args.sizes) + 1))
    for name in args.engines:
        for script in args.scripts:
            for cond in ("clean", "augmented"):
                rows = [r for r in results if r["engine"] == name and r["condition"] == cond and r["script"] == script]
                if not rows:
                    continue
                speed = np.median([r["pages_per_s_core"] for r in rows])
                print(f"| {name} | {script} | {cond} | " + " | ".join(f"{100 * r['cer']:.2f}%" for r in rows)
                      + f" | {speed:.2f} |")
    out = Path(__file__).parent / "results" / "ocr.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "results": results}, indent=1))


if __name__ == "__main__":
    main()

"""Test PDFs with known content: a born-digital one (a real, extractable text layer) and a
scanned one (a rendered page image, no text layer)."""

from __future__ import annotations

import io
from pathlib import Path

from synth.text import find_fonts, render_page

LINES = [["Chapter one: the lake", "Shards are written before the manifest."],
         ["Chapter two: the loader", "Resuming is a seek, not a replay."]]


def born_digital_pdf(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    matplotlib.rcParams["pdf.fonttype"] = 42  # embed TrueType: a real, extractable text layer
    with PdfPages(path) as pdf:
        for page in LINES:
            fig = plt.figure(figsize=(6, 3))
            for j, line in enumerate(page):
                fig.text(0.08, 0.8 - 0.25 * j, line, fontsize=16)
            pdf.savefig(fig)
            plt.close(fig)


def scanned_pdf(path: Path) -> str:
    """Writes the PDF; returns the text on its page."""
    from PIL import Image

    sans = next(f for f in find_fonts()["latin"] if f.endswith("DejaVuSans.ttf"))
    page = render_page(2, 0, size=(640, 240), augment=False, font=sans, font_size=24, lines=3)
    Image.open(io.BytesIO(page.jpeg)).save(path, "PDF", resolution=110)
    return page.text


from synth.layout import WORDS, layout_pdf  # noqa: E402,F401  (multi-column pages, used by tests)

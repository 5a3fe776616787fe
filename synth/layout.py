"""Born-digital pages with real layouts (columns, a spanning title, a sidebar) and their text in
human reading order: the ground truth for reading-order tests and ``benchmarks/layout.py``."""

from __future__ import annotations

import random
from pathlib import Path

__all__ = ["WORDS", "layout_pdf"]


WORDS = tuple(
    [
        "lake",
        "shard",
        "manifest",
        "loader",
        "sample",
        "version",
        "dataset",
        "registry",
        "pipeline",
        "caption",
        "image",
        "token",
        "batch",
        "resume",
        "worker",
        "stream",
        "column",
        "reading",
        "order",
        "layout",
        "block",
        "page",
        "text",
        "filter",
        "dedupe",
        "cluster",
        "signature",
        "engine",
        "record",
        "writer",
        "reader",
        "schedule",
        "mixture",
        "weight",
        "source",
        "packing",
        "sequence",
        "model",
        "training",
        "step",
        "checkpoint",
        "state",
        "seed",
        "position",
        "window",
    ]
)


def _prose(rng: random.Random, n_lines: int, words_per_line: int) -> list[str]:
    return [" ".join(rng.choice(WORDS) for _ in range(words_per_line)).capitalize() for _ in range(n_lines)]


def layout_pdf(
    path: Path, columns: int = 2, *, title: bool = True, sidebar: bool = False, lines: int = 30, seed: int = 0
) -> str:
    """A born-digital page laid out in ``columns`` columns (a full-width title above them, a
    narrow sidebar at the left when asked); returns its text in human reading order (title,
    sidebar, then each column top to bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matplotlib.rcParams["pdf.fonttype"] = 42
    rng = random.Random(seed)
    fig = plt.figure(figsize=(8.27, 11.69))
    order: list[str] = []
    left, right = 0.07, 0.95
    if title:
        t = "Reading order of a " + {1: "one", 2: "two", 3: "three"}.get(columns, str(columns)) + " column page"
        fig.text(0.5, 0.95, t, fontsize=18, ha="center", va="top")
        order.append(t)
    if sidebar:
        side = _prose(rng, 12, 2)
        for j, ln in enumerate(side):
            fig.text(left, 0.88 - j * 0.022, ln, fontsize=9, va="top")
        order.extend(side)
        left = 0.30
    width = (right - left) / columns
    per_line = {1: 9, 2: 4, 3: 3}.get(columns, 2) - (1 if sidebar else 0)
    for c in range(columns):
        col = _prose(rng, lines, per_line)
        for j, ln in enumerate(col):
            fig.text(left + c * width, 0.88 - j * 0.0235, ln, fontsize=10, va="top")
        order.extend(col)
    with open(path, "wb") as f:
        fig.savefig(f, format="pdf")
    plt.close(fig)
    return "\n".join(order)

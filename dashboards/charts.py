"""Charts as inline SVG, rendered on the server: no JavaScript library, no CDN, works offline.

Each function returns ``markupsafe.Markup`` ready to drop into a Jinja template; every label
is escaped. Bars carry ``<title>`` tooltips with exact values and a ``data-value`` attribute
(the browser tests read them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from markupsafe import Markup, escape

__all__ = ["bar_chart", "histogram_chart", "fit_bins", "funnel_chart", "human_bytes", "edge_labels"]

PALETTE = ("#3b6fd8", "#e07b39", "#3aa17e", "#c2476b", "#8a63c9", "#b59b2a", "#4aa3c2", "#7a7a7a")


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"


def _fmt_edge(v: float, kind: str) -> str:
    if kind == "bytes":
        return human_bytes(v)
    if isinstance(v, float) and not v.is_integer():
        return f"{v:g}"
    for div, unit in ((10**9, "G"), (10**6, "M"), (10**3, "k")):
        if abs(v) >= div and v % (div // 10) == 0:  # round thousands: 1.5k, 20k, 3M
            return f"{v / div:g}{unit}"
    return f"{int(v)}"


def edge_labels(edges: Sequence[float], kind: str = "number") -> list[str]:
    """Bin labels; ``kind="count"`` for whole numbers: ``[3, 5)`` reads "3–4", ``[1, 2)`` "1"."""
    out = []
    for i, lo in enumerate(edges):
        hi = edges[i + 1] if i + 1 < len(edges) else None
        if kind == "count" and hi is not None:
            out.append(f"{int(lo)}" if hi - lo <= 1 else f"{int(lo)}–{int(hi) - 1}")
            continue
        out.append(f"≥{_fmt_edge(lo, kind)}" if hi is None else f"{_fmt_edge(lo, kind)}–{_fmt_edge(hi, kind)}")
    return out


def bar_chart(labels: Sequence[str], values: Sequence[float], title: str, *, width: int = 380, height: int = 190,
              color: str = PALETTE[0], chart_id: str | None = None, horizontal: bool = False) -> Markup:
    """A titled bar chart; ``horizontal`` puts long labels on the left."""
    labels, values = list(labels), [float(v) for v in values]
    top = max(values) if values and max(values) > 0 else 1.0
    cid = f' id="{escape(chart_id)}"' if chart_id else ""
    parts = [f'<svg class="chart"{cid} viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'role="img" aria-label="{escape(title)}">',
             f'<text x="4" y="14" class="chart-title">{escape(title)}</text>']
    if not values:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="muted">no data</text>')
    elif horizontal:
        left, row = 175, min(22.0, (height - 24) / len(values))
        for i, (lab, v) in enumerate(zip(labels, values, strict=True)):
            y = 22 + i * row
            w = (width - left - 50) * v / top
            parts.append(f'<text x="{left - 6}" y="{y + row * 0.7:.1f}" text-anchor="end" class="tick">{escape(lab)}</text>'
                         f'<rect class="bar" x="{left}" y="{y:.1f}" width="{max(w, 0.5):.1f}" height="{row * 0.75:.1f}" '
                         f'fill="{color}" data-label="{escape(lab)}" data-value="{v:g}"><title>{escape(lab)}: {v:g}</title></rect>'
                         f'<text x="{left + w + 4:.1f}" y="{y + row * 0.7:.1f}" class="tick">{v:g}</text>')
    else:
        bottom, plot_h = height - 34, height - 58
        bw = (width - 20) / len(values)
        for i, (lab, v) in enumerate(zip(labels, values, strict=True)):
            h = plot_h * v / top
            x = 10 + i * bw
            parts.append(f'<rect class="bar" x="{x + 1:.1f}" y="{bottom - h:.1f}" width="{max(bw - 2, 1):.1f}" '
                         f'height="{max(h, 0.5):.1f}" fill="{color}" data-label="{escape(lab)}" data-value="{v:g}">'
                         f'<title>{escape(lab)}: {v:g}</title></rect>')
            if v:
                parts.append(f'<text x="{x + bw / 2:.1f}" y="{bottom - h - 3:.1f}" text-anchor="middle" class="tick">{v:g}</text>')
            parts.append(f'<text x="{x + bw / 2:.1f}" y="{bottom + 12}" text-anchor="middle" class="tick" '
                         f'transform="rotate(20 {x + bw / 2:.1f} {bottom + 12})">{escape(lab)}</text>')
        parts.append(f'<line x1="8" x2="{width - 8}" y1="{bottom}" y2="{bottom}" class="axis"/>')
    parts.append("</svg>")
    return Markup("".join(parts))


def fit_bins(edges: Sequence[float], counts: Sequence[int], max_bars: int = 16) -> tuple[list[float], list[int]]:
    """Bins fitted to the data: empty outer bins trimmed, then neighbours joined (2, 3, ... at a
    time) until at most ``max_bars`` remain. Edges stay edges of the stored histogram, so the
    counts are exact. Returns the fitted edges (one more than the counts when the last bar is
    closed, as many when it is the open-ended last bin) and counts."""
    edges, counts = list(edges), [int(c) for c in counts]
    if not any(counts):
        return edges, counts
    lo = next(i for i, c in enumerate(counts) if c)
    hi = len(counts) - next(i for i, c in enumerate(reversed(counts)) if c)
    g = max(1, -(-(hi - lo) // max_bars))
    out_e, out_c = [], []
    for i in range(lo, hi, g):
        out_e.append(edges[i])
        out_c.append(sum(counts[i:min(i + g, hi)]))
    end = min(lo + len(out_c) * g, hi)
    if end < len(edges):
        out_e.append(edges[end])  # the last bar's upper edge (absent: it is the open-ended bin)
    return out_e, out_c


def histogram_chart(hist: dict[str, Any] | None, title: str, *, kind: str = "number", chart_id: str | None = None,
                    color: str = PALETTE[0], trim: bool = True, max_bars: int = 16) -> Markup:
    """A histogram from ``{"edges": [...], "counts": [...]}``: with ``trim``, bars fitted to
    the data (``fit_bins``: empty outer bins trimmed, at most ``max_bars`` bars)."""
    if not hist:
        return bar_chart([], [], title, chart_id=chart_id)
    edges, counts = list(hist["edges"]), list(hist["counts"])
    if trim and any(counts):
        edges, counts = fit_bins(edges, counts, max_bars)
    labels = edge_labels(edges, kind)[:len(counts)]
    return bar_chart(labels, counts, title, chart_id=chart_id, color=color)


def funnel_chart(steps: Sequence[tuple[str, float]], title: str, *, chart_id: str | None = None) -> Markup:
    """Inputs, then what each reason removed, then what was kept."""
    labels = [s[0] for s in steps]
    values = [s[1] for s in steps]
    return bar_chart(labels, values, title, chart_id=chart_id, horizontal=True, color=PALETTE[1],
                     height=max(120, 30 + 22 * len(steps)))

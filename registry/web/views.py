"""View models for the web registry: samples with their annotations drawn, the lineage graph.

Everything user-supplied is escaped here or by Jinja's autoescape; SVG is built from escaped
pieces only, so a caption or label holding ``<script>`` renders as text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from markupsafe import Markup, escape

from datalake.sample import PLACEHOLDER_RE
from registry.types import LineageGraph

__all__ = ["sample_view", "lineage_svg", "highlight_placeholders"]

_PH = PLACEHOLDER_RE  # {box:i}, {point:i}, {polygon:i}, {action:i}


def highlight_placeholders(text: str, annotations: list[dict[str, Any]]) -> Markup:
    """Escape ``text`` and mark its ``{box:i}`` placeholders, titled with what they point to."""
    out, last = [], 0
    for m in _PH.finditer(text):
        out.append(escape(text[last:m.start()]))
        i = int(m.group(2))
        a = annotations[i] if i < len(annotations) else {}
        what = a.get("label") or a.get("text") or a.get("action") or a.get("type", "?")
        if m.group(1) == "segment" and a.get("t0") is not None:  # a video span: its timestamps, seekable
            out.append(Markup('<span class="ph ph-segment" data-t0="{}" data-media="{}" title="{}">{}</span>').format(
                a["t0"], a.get("media", 0), f"{m.group(0)}: {what}", f"{a['t0']:.2f}s–{a['t1']:.2f}s"))
            last = m.end()
            continue
        shown = _action_text(a, annotations) if m.group(1) == "action" else None
        out.append(Markup('<span class="ph{}" title="{}">{}</span>').format(
            " ph-action" if shown else "", f"{m.group(0)}: {what}" if shown else f"{m.group(1)} {i}: {what}",
            shown or m.group(0)))
        last = m.end()
    out.append(escape(text[last:]))
    return Markup("").join(out)


def _action_text(a: dict[str, Any], annotations: list[dict[str, Any]]) -> str | None:
    """An action as the model is taught to write it, in screenshot pixels: ``click(x=812, y=440)``."""
    from datalake.actions import format_action

    if not a.get("action") or not a.get("xy"):
        return None
    attrs = a.get("attrs") or {}
    pts = [a["xy"]]
    to = attrs.get("to")
    if isinstance(to, int) and 0 <= to < len(annotations) and annotations[to].get("xy"):
        pts.append(annotations[to]["xy"])
    return format_action(a["action"], [(f"{x:.0f}", f"{y:.0f}") for x, y in pts], attrs.get("args"))


#: annotation colours by role (a stable pick per role name); annotations without a role keep
#: their type's colour (boxes red, polygons blue, points yellow)
ROLE_COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324",
                "#469990", "#800000")


def role_colour(role: str) -> str:
    import zlib

    return ROLE_COLOURS[zlib.crc32(role.encode()) % len(ROLE_COLOURS)]


def _overlay(anns: list[tuple[int, dict[str, Any]]], w: int, h: int) -> Markup:
    # "meet": the overlay is fitted like the image (object-fit: contain), in a fixed-size tile too
    parts = [f'<svg class="overlay" viewBox="0 0 {w} {h}" preserveAspectRatio="xMidYMid meet" data-width="{w}" data-height="{h}">']
    r = max(3.0, min(w, h) / 90)
    fs = max(7.0, min(w, h) / 40)
    for i, a in anns:
        label = a.get("label") or a.get("text") or a.get("action") or ""
        lab = escape(f"{i}: {label}" if label else str(i))
        t = a.get("type")
        role = a.get("role")
        tag = f' data-role="{escape(role)}"' if role else ""
        col = role_colour(role) if role else None
        stroke = f' style="stroke:{col}"' if col else ""
        if t == "box" and a.get("xyxy"):
            x0, y0, x1, y1 = a["xyxy"]
            parts.append(f'<rect class="ann-box" data-ann="{i}"{tag}{stroke} x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}"/>'
                         f'<text class="ann-label"{tag} x="{x0 + 2}" y="{y0 + fs}" font-size="{fs:.0f}">{lab}</text>')
        elif t == "point" and a.get("xy"):
            x, y = a["xy"]
            fill = f' style="fill:{col}"' if col else ""
            parts.append(f'<circle class="ann-point" data-ann="{i}"{tag}{fill} cx="{x}" cy="{y}" r="{r:.1f}"/>'
                         f'<text class="ann-label"{tag} x="{x + r + 2:.1f}" y="{y - r:.1f}" font-size="{fs:.0f}">{lab}</text>')
        elif t == "polygon" and a.get("points"):
            pts = " ".join(f"{x},{y}" for x, y in a["points"])
            x, y = a["points"][0]
            parts.append(f'<polygon class="ann-polygon" data-ann="{i}"{tag}{stroke} points="{pts}"/>'
                         f'<text class="ann-label"{tag} x="{x}" y="{y - 3}" font-size="{fs:.0f}">{lab}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _timeline(anns: list[tuple[int, dict[str, Any]]], duration: float | None) -> Markup:
    segs = [(i, a) for i, a in anns if a.get("t0") is not None and a.get("t1") is not None]
    if not segs:
        return Markup("")
    end = duration or max(a["t1"] for _, a in segs) or 1.0
    parts = ['<svg class="timeline" viewBox="0 0 600 40" width="100%" height="40">',
             '<rect x="0" y="10" width="600" height="16" fill="#e3e6ee"/>']
    for i, a in segs:
        x0, x1 = 600 * a["t0"] / end, 600 * a["t1"] / end
        shot = a.get("label") == "shot"
        parts.append(f'<rect class="seg{" seg-shot" if shot else ""}" data-ann="{i}" data-t0="{a["t0"]}" '
                     f'data-t1="{a["t1"]}" x="{x0:.1f}" y="{10 if shot else 28}" width="{max(x1 - x0 - 1, 2):.1f}" '
                     f'height="{16 if shot else 8}">'
                     f'<title>{escape(a.get("text") or a.get("label") or "")} [{a["t0"]}s–{a["t1"]}s]</title></rect>')
    parts.append("</svg>")
    return Markup("".join(parts))


def sample_view(record: dict[str, Any], media_url: Callable[[str], str], *, thumb: int | None = None,
                media_range: tuple[int, int] | None = None) -> dict[str, Any]:
    """What the templates need to show one sample: media with overlays, parts in order.

    ``thumb``: image URLs ask for thumbnails of that size (grids of samples). ``media_range``:
    only media ``[start, stop)`` and the parts around them are shown (a long document, page by
    page); ``hidden_media`` says how many were left out."""
    anns = record.get("annotations", [])
    media = []
    all_media = record.get("media", [])
    lo, hi = media_range if media_range else (0, len(all_media))
    for i, m in enumerate(all_media):
        mine = [(j, a) for j, a in enumerate(anns) if a.get("media") == i]
        mime = m.get("mime", "")
        url = media_url(m["name"])
        if thumb and mime.startswith("image/"):
            url += f"?thumb={thumb}"
        media.append({**m, "index": i, "url": url, "full_url": media_url(m["name"]), "is_image": mime.startswith("image/"),
                      "shown": lo <= i < hi,
                      "is_video": mime.startswith("video/"), "n_annotations": len(mine),
                      "overlay": _overlay(mine, m["width"], m["height"]),
                      "timeline": _timeline(mine, m.get("duration_s"))})

    def parts(content: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out, cur = [], -1
        for p in content:
            if "media" in p:
                cur = p["media"]
                if lo <= cur < hi:
                    out.append({"media": cur})
            elif lo <= cur < hi or (cur < 0 and lo == 0):  # text belongs with the media before it
                out.append({"text": highlight_placeholders(p["text"], anns)})
        return out

    vs = (record.get("meta") or {}).get("video_shots") or {}
    keyframes = [{"url": media_url(all_media[k["media"]]["name"]), "t": k["t"], "shot": k["shot"], "role": k.get("role"),
                  "video": vs.get("media", 0)}
                 for k in vs.get("keyframes") or () if isinstance(k, dict) and k.get("media", -1) < len(all_media)]
    return {"key": record["key"], "kind": record["kind"], "source": record.get("source", {}), "media": media,
            "keyframes": keyframes,
            "hidden_media": len(all_media) - (min(hi, len(all_media)) - min(lo, len(all_media))), "media_range": (lo, hi),
            "parts": parts(record.get("content", [])), "annotations": anns, "meta": record.get("meta", {}),
            "roles": [{"role": r, "colour": role_colour(r), "n": n} for r, n in sorted(
                Counter(a["role"] for a in anns if a.get("role")).items())],
            "messages": [{"role": m["role"], "parts": parts(m.get("content", []))} for m in record.get("messages", [])]}


def lineage_svg(g: LineageGraph, version_url: Callable[[str], str], run_url: Callable[[str], str]) -> Markup:
    """Upstream to the left of the root, downstream to the right; every node is a link."""
    out_edges: dict[str, list[str]] = {}
    in_edges: dict[str, list[str]] = {}
    for a, b in g.edges:
        out_edges.setdefault(a, []).append(b)
        in_edges.setdefault(b, []).append(a)
    layer = {g.root: 0}
    for edges, sign in ((in_edges, -1), (out_edges, 1)):
        frontier = [g.root]
        while frontier:
            nxt = []
            for n in frontier:
                for m in edges.get(n, []):
                    if m not in layer:
                        layer[m] = layer[n] + sign
                        nxt.append(m)
            frontier = nxt
    nodes = {n["id"]: n for n in g.nodes}
    for n in nodes:
        layer.setdefault(n, 0)
    lo = min(layer.values())
    cols: dict[int, list[str]] = {}
    for n in sorted(nodes, key=lambda k: (layer[k], k)):
        cols.setdefault(layer[n] - lo, []).append(n)
    bw, bh, gx, gy = 190, 44, 60, 22
    pos = {n: (20 + c * (bw + gx), 20 + r * (bh + gy)) for c, ns in cols.items() for r, n in enumerate(ns)}
    width = 40 + len(cols) * (bw + gx) - gx
    height = 40 + max(len(ns) for ns in cols.values()) * (bh + gy) - gy
    parts = [f'<svg class="lineage" viewBox="0 0 {width} {height}" width="{width}" height="{height}">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#9aa6bf"/></marker></defs>']
    for a, b in g.edges:
        (x0, y0), (x1, y1) = pos[a], pos[b]
        sx, sy, ex, ey = x0 + bw, y0 + bh / 2, x1, y1 + bh / 2
        parts.append(f'<path class="edge" d="M {sx} {sy} C {sx + gx / 2} {sy}, {ex - gx / 2} {ey}, {ex} {ey}" '
                     'marker-end="url(#arrow)"/>')
    for nid, n in nodes.items():
        x, y = pos[nid]
        is_run = n["type"] == "run"
        href = run_url(n["run_id"]) if is_run else version_url(n["ref"])
        title = f"run: {n['name']}" if is_run else n["ref"]
        sub = f"{n['kind']} · {n['status']}" if is_run else f"{n['samples']} samples · {n['state']}"
        cls = "node run" if is_run else "node version" + (" root" if nid == g.root else "")
        short = title if len(title) <= 26 else title[:25] + "…"
        parts.append(f'<a href="{escape(href)}" class="{cls}" data-node="{escape(nid)}"><g class="{cls}">'
                     f'<rect x="{x}" y="{y}" width="{bw}" height="{bh}" rx="7"/>'
                     f'<text x="{x + 9}" y="{y + 18}" font-weight="600">{escape(short)}</text>'
                     f'<text x="{x + 9}" y="{y + 35}" class="muted">{escape(sub)}</text><title>{escape(title)}</title></g></a>')
    parts.append("</svg>")
    return Markup("".join(parts))

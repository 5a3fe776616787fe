"""What changed between two versions, from their manifests and shard indexes (no media read).

- keys: added, removed, and changed (the same key with another record: member sizes, text
  length or media dimensions differ in the index -- a content-level change, since the index
  holds no per-sample hash); counts plus the first keys of each, sorted;
- kinds and media types side by side;
- distributions: for every statistics histogram (image sides, aspect, text length, media
  size, page tokens, OCR confidence, video duration ...) the sample count and approximate
  quartiles of each version (read off the histogram: the lower edge of the bin holding it);
- reject reasons side by side (``outcome:reason`` -> count).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from datalake.stats import Histogram, VersionStats
from datalake.version import DatasetVersion

__all__ = ["diff_versions", "fingerprints", "quantile"]


def fingerprints(v: DatasetVersion) -> dict[str, tuple[Any, ...]]:
    """key -> what the index says of its record (kind, text length, media sizes, member sizes)."""
    out: dict[str, tuple[Any, ...]] = {}
    for j in range(len(v.manifest.shards)):
        for e in v.shard(j).index.entries:
            info = e.info or {}
            out[e.key] = (info.get("kind"), info.get("text_chars"), tuple(map(tuple, info.get("media", []))),
                          tuple(sorted((m, size) for m, (_, size) in e.members.items())))
    return out


def quantile(h: Histogram, q: float) -> float | None:
    """The lower edge of the bin holding the q-quantile (None for an empty histogram)."""
    total = sum(h.counts)
    if not total:
        return None
    target, seen = q * total, 0
    for edge, n in zip(h.edges, h.counts, strict=True):
        seen += n
        if seen >= target and n:
            return float(edge)
    return float(h.edges[-1])  # pragma: no cover - the loop always reaches the total


def _side(a: dict[str, int], b: dict[str, int]) -> dict[str, dict[str, int]]:
    return {k: {"a": a.get(k, 0), "b": b.get(k, 0)} for k in sorted(set(a) | set(b))}


def diff_versions(a: DatasetVersion, b: DatasetVersion, *, examples: int = 10) -> dict[str, Any]:
    fa, fb = fingerprints(a), fingerprints(b)
    added = sorted(fb.keys() - fa.keys())
    removed = sorted(fa.keys() - fb.keys())
    changed = sorted(k for k in fa.keys() & fb.keys() if fa[k] != fb[k])
    sa, sb = VersionStats.from_json(a.manifest.stats), VersionStats.from_json(b.manifest.stats)
    dists = {}
    for name in VersionStats._HISTS:
        ha, hb = getattr(sa, name), getattr(sb, name)
        if sum(ha.counts) or sum(hb.counts):
            dists[name] = {side: {"count": sum(h.counts), "p25": quantile(h, 0.25), "p50": quantile(h, 0.5),
                                  "p75": quantile(h, 0.75)} for side, h in (("a", ha), ("b", hb))}
    ra = (a.manifest.rejects or {}).get("reasons", {})
    rb = (b.manifest.rejects or {}).get("reasons", {})
    return {
        "a": a.manifest.ref, "b": b.manifest.ref,
        "samples": {"a": len(fa), "b": len(fb)},
        "keys": {"added": len(added), "removed": len(removed), "changed": len(changed),
                 "unchanged": len(fa.keys() & fb.keys()) - len(changed),
                 "examples": {"added": added[:examples], "removed": removed[:examples], "changed": changed[:examples]}},
        "kinds": _side(dict(Counter(sa.kinds)), dict(Counter(sb.kinds))),
        "mimes": _side(dict(Counter(sa.mimes)), dict(Counter(sb.mimes))),
        "distributions": dists,
        "rejects": _side(ra, rb),
    }

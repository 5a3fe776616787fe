"""Summary statistics of a dataset version, computed while its samples are written.

Counts are additive, so statistics of shards written by parallel tasks merge exactly
(``VersionStats.merge``): a Spark or Ray job gets the same numbers as a local one. The
histograms use fixed, fine log-spaced edges, so versions can be compared bin by bin, and the
registry's charts fit the bars to each version's data.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from datalake.sample import Sample

__all__ = ["VersionStats", "Histogram", "nice_edges", "SIDE_EDGES", "ASPECT_EDGES", "TEXT_EDGES", "BYTES_EDGES", "PAGES_EDGES",
           "PAGE_TOKENS_EDGES", "CONFIDENCE_EDGES", "DURATION_EDGES", "SHOTS_EDGES"]

#: six steps a decade (1, 1.5, 2, 3, 5, 7 x 10^k): fine enough that the charts can fit their
#: bins to the data (``dashboards.charts.histogram_chart`` trims the empty outer bins and joins
#: neighbours into at most 16 bars), fixed so that tasks and versions merge bin by bin
NICE_STEPS = (1, 1.5, 2, 3, 5, 7)


def nice_edges(decades: int) -> tuple[int, ...]:
    """``0, 1, 2, 3, 5, 7, 10, 15, 20, ... 10**decades``: log-spaced edges on round numbers."""
    out = [0] + [int(m * 10**e) for e in range(decades) for m in NICE_STEPS]
    return tuple(sorted(set(out))) + (10**decades,)


# log-spaced edges reaching far past real data (long documents, gigapixel scans, 10 GB media),
# so no bin saturates
SIDE_EDGES = nice_edges(5)
ASPECT_EDGES = (0.0, 0.25, 0.5, 0.75, 1.0, 1.333, 2.0, 4.0)
TEXT_EDGES = nice_edges(8)
BYTES_EDGES = nice_edges(10)
# documents (samples with ``meta.document``) and OCRed images (``meta.ocr``)
PAGES_EDGES = (1, 2, 3, 5, 9, 17, 33, 65, 129, 257, 513, 1025, 2049, 4097)
PAGE_TOKENS_EDGES = nice_edges(6)
CONFIDENCE_EDGES = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
# videos: seconds (short clips to feature films) and shots per video
DURATION_EDGES = (0, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400)
SHOTS_EDGES = (1, 2, 3, 5, 9, 17, 33, 65, 129, 257, 513, 1025)
_NEW_EDGES = {"pages": PAGES_EDGES, "page_tokens": PAGE_TOKENS_EDGES, "ocr_confidence": CONFIDENCE_EDGES,
              "video_duration": DURATION_EDGES, "video_shots": SHOTS_EDGES}


@dataclass
class Histogram:
    """Counts of values in ``[edges[i], edges[i+1])``; the last bin is open-ended."""

    edges: tuple[float, ...]
    counts: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * len(self.edges)

    def add(self, value: float) -> None:
        self.counts[max(0, bisect.bisect_right(self.edges, value) - 1)] += 1

    def merge(self, other: Histogram) -> None:
        if tuple(other.edges) != tuple(self.edges):
            raise ValueError("cannot merge histograms with different edges")
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]

    def to_json(self) -> dict[str, Any]:
        return {"edges": list(self.edges), "counts": list(self.counts)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Histogram:
        return cls(tuple(d["edges"]), list(d["counts"]))


@dataclass
class VersionStats:
    samples: int = 0
    media: int = 0
    media_bytes: int = 0
    text_chars: int = 0
    synthetic: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    mimes: Counter[str] = field(default_factory=Counter)
    width: Histogram = field(default_factory=lambda: Histogram(SIDE_EDGES))
    height: Histogram = field(default_factory=lambda: Histogram(SIDE_EDGES))
    aspect: Histogram = field(default_factory=lambda: Histogram(ASPECT_EDGES))
    text_length: Histogram = field(default_factory=lambda: Histogram(TEXT_EDGES))
    media_size: Histogram = field(default_factory=lambda: Histogram(BYTES_EDGES))
    documents: int = 0
    pages: Histogram = field(default_factory=lambda: Histogram(PAGES_EDGES))
    page_tokens: Histogram = field(default_factory=lambda: Histogram(PAGE_TOKENS_EDGES))
    ocr_pages: int = 0
    ocr_confidence: Histogram = field(default_factory=lambda: Histogram(CONFIDENCE_EDGES))
    #: parts removed from kept samples, by reason: text nodes (``meta.dropped_nodes``, e.g.
    #: ``node_too_few_words``) and media (``meta.dropped_parts``, e.g. ``too_small``, ``repeated_image``)
    parts_dropped: Counter[str] = field(default_factory=Counter)
    #: videos (media ``video/*`` shown by the content): durations, shots per video (after
    #: ``video_shots``), frame rates and resolutions
    videos: int = 0
    video_duration: Histogram = field(default_factory=lambda: Histogram(DURATION_EDGES))
    video_shots: Histogram = field(default_factory=lambda: Histogram(SHOTS_EDGES))
    video_fps: Counter[str] = field(default_factory=Counter)
    video_resolution: Counter[str] = field(default_factory=Counter)

    _HISTS = ("width", "height", "aspect", "text_length", "media_size", "pages", "page_tokens", "ocr_confidence",
              "video_duration", "video_shots")

    def add(self, s: Sample) -> None:
        self.samples += 1
        self.kinds[s.kind] += 1
        self.synthetic += bool(s.meta.get("synthetic"))
        text = len(s.text())
        self.text_chars += text
        self.text_length.add(text)
        for m in s.media:
            self.media += 1
            self.mimes[m.mime] += 1
            self.width.add(m.width)
            self.height.add(m.height)
            self.aspect.add(m.width / m.height)
            size = len(s.blobs.get(m.name, b""))
            self.media_bytes += size
            self.media_size.add(size)
        shots = s.meta.get("video_shots")
        for i, m in enumerate(s.media):
            if m.mime.startswith("video/") and not (isinstance(shots, dict) and any(
                    c.get("media") == i for c in shots.get("clips") or ())):  # a clip is not another video
                self.videos += 1
                self.video_duration.add(float(m.duration_s or 0.0))
                self.video_fps[f"{m.fps:g}" if m.fps else "unknown"] += 1
                self.video_resolution[f"{m.width}x{m.height}"] += 1
                if isinstance(shots, dict) and shots.get("media") == i:
                    self.video_shots.add(len(shots.get("shots") or ()))
        doc = s.meta.get("document")
        if isinstance(doc, dict) and isinstance(doc.get("pages"), int):
            self.documents += 1
            self.pages.add(doc["pages"])
            for t in doc.get("tokens_per_page") or ():
                self.page_tokens.add(t)
        nodes = s.meta.get("dropped_nodes")
        if isinstance(nodes, dict):
            self.parts_dropped.update({f"node: {r}": int(n) for r, n in nodes.items() if isinstance(n, int) and n})
        for d in s.meta.get("dropped_parts") or ():
            if isinstance(d, dict) and d.get("reason"):
                self.parts_dropped[f"image: {d['reason']}"] += 1
        ocr = s.meta.get("ocr")
        if isinstance(ocr, dict):
            for page in ocr.values():
                if isinstance(page, dict) and page.get("lines"):
                    self.ocr_pages += 1
                    self.ocr_confidence.add(float(page.get("mean_confidence", 0.0)))

    def merge(self, other: VersionStats) -> VersionStats:
        self.samples += other.samples
        self.media += other.media
        self.media_bytes += other.media_bytes
        self.text_chars += other.text_chars
        self.synthetic += other.synthetic
        self.documents += other.documents
        self.ocr_pages += other.ocr_pages
        self.kinds.update(other.kinds)
        self.mimes.update(other.mimes)
        self.parts_dropped.update(other.parts_dropped)
        self.videos += other.videos
        self.video_fps.update(other.video_fps)
        self.video_resolution.update(other.video_resolution)
        for h in self._HISTS:
            getattr(self, h).merge(getattr(other, h))
        return self

    def to_json(self) -> dict[str, Any]:
        return {
            "samples": self.samples, "media": self.media, "media_bytes": self.media_bytes,
            "text_chars": self.text_chars, "synthetic": self.synthetic, "documents": self.documents,
            "ocr_pages": self.ocr_pages,
            "kinds": dict(sorted(self.kinds.items())), "mimes": dict(sorted(self.mimes.items())),
            "parts_dropped": dict(sorted(self.parts_dropped.items())),
            "videos": self.videos, "video_fps": dict(sorted(self.video_fps.items())),
            "video_resolution": dict(sorted(self.video_resolution.items())),
            **{h: getattr(self, h).to_json() for h in self._HISTS},
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> VersionStats:
        # versions written before a field existed read it as empty
        return cls(samples=d["samples"], media=d["media"], media_bytes=d["media_bytes"],
                   text_chars=d["text_chars"], synthetic=d.get("synthetic", 0), kinds=Counter(d["kinds"]),
                   mimes=Counter(d["mimes"]), parts_dropped=Counter(d.get("parts_dropped") or {}),
                   documents=d.get("documents", 0), ocr_pages=d.get("ocr_pages", 0), videos=d.get("videos", 0),
                   video_fps=Counter(d.get("video_fps") or {}), video_resolution=Counter(d.get("video_resolution") or {}),
                   **{h: Histogram.from_json(d[h]) if h in d else Histogram(_NEW_EDGES[h]) for h in cls._HISTS})

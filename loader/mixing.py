"""Mixing sources by weight: which source feeds each position, in O(1) per position.

Weights follow a **schedule**: a piecewise-linear function of the position, given as
``[(position, {source: weight}), ...]`` (the Kimi-VL "progressive multimodal ratio", or a
long-context stage mixing 25 % long data with 75 % replay). Each point's weights are normalised
first, so the interpolated weights always sum to one and the cumulative quota of source ``s``,
``C_s(x) = integral of w_s from 0 to x``, has a closed form (piecewise quadratic).

**Counts.** Source ``s`` has its ``m``-th *event* where ``C_s`` reaches ``m + 1/2``; the first
``h`` positions belong to the first ``h`` events in time order (ties by source index). So
the number of draws of each source before position ``h``, ``counts(h)``, is a pure function of
``h`` found by bisection on ``x`` -- no walk over the positions before it -- and it never
decreases: the first ``h`` events are among the first ``h + 1``. It differs from the quota
``h * w`` by less than one sample per source at every ``h``.

**Order inside a block** of ``B`` positions: each source's count in the block,
``counts(end) - counts(start)``, placed by the same rule at block scale (event ``i`` of a source
with ``n`` draws at ``(i + 1/2) / n``), so within any window the shares stay within about one
sample of the weights, and over any span of blocks they are exact to one sample.

A mixing segment starts at a position with given draw counts (``start``, ``draws``): a resume
with new weights starts a new segment "from here on" without touching what came before.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["Schedule", "Segment", "block_table"]


@dataclass(frozen=True)
class Schedule:
    """Weights per source as a piecewise-linear function of the position (normalised per point)."""

    points: tuple[tuple[int, tuple[float, ...]], ...]

    @classmethod
    def constant(cls, weights: Sequence[float]) -> Schedule:
        return cls.from_points([(0, weights)])

    @classmethod
    def from_points(cls, points: Sequence[tuple[int, Sequence[float]]]) -> Schedule:
        if not points:
            raise ValueError("a schedule needs at least one (position, weights) point")
        pts = sorted((int(p), tuple(float(w) for w in ws)) for p, ws in points)
        n = len(pts[0][1])
        out = []
        for p, ws in pts:
            if len(ws) != n:
                raise ValueError(f"schedule point at {p} has {len(ws)} weights, expected {n}")
            if any(not w >= 0 for w in ws) or not sum(ws) > 0 or not math.isfinite(sum(ws)):
                raise ValueError(f"schedule point at {p}: weights must be >= 0 with a positive sum, got {ws}")
            if out and out[-1][0] == p:
                raise ValueError(f"schedule has two points at position {p}")
            total = sum(ws)
            out.append((p, tuple(w / total for w in ws)))
        return cls(tuple(out))

    def to_json(self) -> list[list[Any]]:
        return [[p, list(ws)] for p, ws in self.points]

    @classmethod
    def from_json(cls, d: Sequence[Sequence[Any]]) -> Schedule:
        return cls.from_points([(int(p), [float(w) for w in ws]) for p, ws in d])

    @property
    def n_sources(self) -> int:
        return len(self.points[0][1])

    def weights(self, pos: float) -> tuple[float, ...]:
        pts = self.points
        if pos <= pts[0][0]:
            return pts[0][1]
        if pos >= pts[-1][0]:
            return pts[-1][1]
        i = int(np.searchsorted([p for p, _ in pts], pos, side="right")) - 1
        (p0, w0), (p1, w1) = pts[i], pts[i + 1]
        t = (pos - p0) / (p1 - p0)
        return tuple(a + (b - a) * t for a, b in zip(w0, w1, strict=True))

    def cumulative(self, x: float) -> np.ndarray:
        """``C(x)``: per source, the integral of its weight over ``[0, x]`` (sums to ``x``)."""
        return _cumulative(self.points, float(x))


@lru_cache(maxsize=256)
def _knots(points: tuple[tuple[int, tuple[float, ...]], ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs = np.array([p for p, _ in points], dtype=np.float64)
    ws = np.array([w for _, w in points], dtype=np.float64)
    # integral from 0 to each knot: before the first knot the weights are the first point's
    cum = np.zeros_like(ws)
    cum[0] = ws[0] * xs[0]
    for i in range(1, len(xs)):
        cum[i] = cum[i - 1] + (ws[i - 1] + ws[i]) / 2 * (xs[i] - xs[i - 1])
    return xs, ws, cum


def _cumulative(points: tuple[tuple[int, tuple[float, ...]], ...], x: float) -> np.ndarray:
    xs, ws, cum = _knots(points)
    if len(xs) == 1 or x <= xs[0]:
        return ws[0] * x
    i = int(np.searchsorted(xs, x, side="right")) - 1
    if i >= len(xs) - 1:
        return cum[-1] + ws[-1] * (x - xs[-1])
    dx, span = x - xs[i], xs[i + 1] - xs[i]
    return cum[i] + ws[i] * dx + (ws[i + 1] - ws[i]) * dx * dx / (2 * span)


@dataclass(frozen=True)
class Segment:
    """Mixing from position ``start`` on, with ``draws[s]`` draws of each source before it."""

    start: int
    schedule: Schedule
    draws: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start, "schedule": self.schedule.to_json(), "draws": list(self.draws)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Segment:
        return cls(int(d["start"]), Schedule.from_json(d["schedule"]), tuple(int(k) for k in d["draws"]))

    def counts(self, pos: int) -> np.ndarray:
        """Draws of each source before absolute position ``pos`` (``>= start``)."""
        return np.asarray(self.draws, dtype=np.int64) + _event_counts(self.schedule.points, self.start,
                                                                        int(pos) - self.start)


def _events_until(points: tuple, base: np.ndarray, start: int, x: float) -> np.ndarray:
    """Per source, events of the segment whose time is <= ``x`` (relative to ``start``)."""
    c = _cumulative(points, start + x) - base
    return np.maximum(0, np.floor(c + 0.5)).astype(np.int64)


@lru_cache(maxsize=4096)
def _event_counts_cached(points: tuple, start: int, h: int) -> tuple[int, ...]:
    n = len(points[0][1])
    if h <= 0:
        return (0,) * n
    base = _cumulative(points, float(start))
    lo, hi = max(0.0, h - n / 2 - 1.0), h + n / 2 + 1.0  # total(lo) < h <= total(hi)
    while True:
        mid = (lo + hi) / 2
        if mid <= lo or mid >= hi:
            break
        if int(_events_until(points, base, start, mid).sum()) >= h:
            hi = mid
        else:
            lo = mid
    got = _events_until(points, base, start, lo)
    more = _events_until(points, base, start, hi) - got
    need = h - int(got.sum())
    for s in range(n):  # events at the same time: by source index
        take = min(int(more[s]), need)
        got[s] += take
        need -= take
    if need:
        raise AssertionError(f"mixing: could not place {h} positions (internal error)")
    return tuple(int(v) for v in got)


def _event_counts(points: tuple, start: int, h: int) -> np.ndarray:
    return np.asarray(_event_counts_cached(points, int(start), int(h)), dtype=np.int64)


def block_table(segment: Segment, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``[lo, hi)`` (inside ``segment``): the source of each and its draw number."""
    k0 = segment.counts(lo)
    n = segment.counts(hi) - k0
    if n.sum() != hi - lo:
        raise AssertionError("mixing: block counts do not add up (internal error)")
    srcs = np.concatenate([np.full(c, s, dtype=np.int64) for s, c in enumerate(n)])
    idx = np.concatenate([np.arange(c, dtype=np.int64) for c in n])
    times = (idx + 0.5) / np.maximum(1, n[srcs])
    order = np.lexsort((srcs, times))
    srcs, idx = srcs[order], idx[order]
    return srcs, k0[srcs] + idx

"""Mixing sources by weight, deterministically, with weights that follow a schedule.

Which source feeds global position ``p`` is decided by a deterministic low-discrepancy rule
(the "largest deficit" or smooth weighted round robin): each source accumulates credit equal
to its weight at every step and the source with the most credit takes the step and pays 1.
Over any window the realised share of each source stays within about one sample of its
weight times the window -- far tighter than i.i.d. draws (which wander by sqrt(n)). Ties break
by source index, so the sequence is a pure function of the weights.

Weights may follow a schedule: a piecewise-linear function of the global position, given as
``[(position, {source: weight}), ...]`` (the Kimi-VL "progressive multimodal ratio", or a
long-context stage mixing 25 % long data with 75 % replay). The mixer's state is its position
and credits (small, JSON-able); ``set_weights`` at resume time means "from here on".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Schedule", "Mixer"]


@dataclass(frozen=True)
class Schedule:
    """Weights per source as a piecewise-linear function of the global position."""

    points: tuple[tuple[int, tuple[float, ...]], ...]

    @classmethod
    def constant(cls, weights: Sequence[float]) -> Schedule:
        return cls(((0, tuple(float(w) for w in weights)),))

    @classmethod
    def from_points(cls, points: Sequence[tuple[int, Sequence[float]]]) -> Schedule:
        if not points:
            raise ValueError("a schedule needs at least one (position, weights) point")
        pts = tuple(sorted((int(p), tuple(float(w) for w in ws)) for p, ws in points))
        n = len(pts[0][1])
        for p, ws in pts:
            if len(ws) != n:
                raise ValueError(f"schedule point at {p} has {len(ws)} weights, expected {n}")
            if any(w < 0 for w in ws) or sum(ws) <= 0:
                raise ValueError(f"schedule point at {p}: weights must be >= 0 with a positive sum, got {ws}")
        return cls(pts)

    def weights(self, pos: int) -> tuple[float, ...]:
        pts = self.points
        if pos <= pts[0][0]:
            ws = pts[0][1]
        elif pos >= pts[-1][0]:
            ws = pts[-1][1]
        else:
            for (p0, w0), (p1, w1) in zip(pts, pts[1:], strict=False):
                if p0 <= pos < p1:
                    t = (pos - p0) / (p1 - p0)
                    ws = tuple(a + (b - a) * t for a, b in zip(w0, w1, strict=True))
                    break
        total = sum(ws)
        return tuple(w / total for w in ws)


@dataclass
class Mixer:
    schedule: Schedule
    position: int = 0
    credit: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.schedule.points[0][1])
        if not self.credit:
            self.credit = [0.0] * n

    def next(self) -> int:
        """The source of the current position; advances by one."""
        ws = self.schedule.weights(self.position)
        for i, w in enumerate(ws):
            self.credit[i] += w
        best = max(range(len(ws)), key=lambda i: (self.credit[i], -i))
        self.credit[best] -= 1.0
        self.position += 1
        return best

    def take(self, n: int) -> list[int]:
        return [self.next() for _ in range(n)]

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position, "credit": list(self.credit)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["credit"]) != len(self.credit):
            raise ValueError(f"mixer state has {len(state['credit'])} sources, this mixer has {len(self.credit)}")
        self.position, self.credit = int(state["position"]), [float(c) for c in state["credit"]]

    def set_weights(self, schedule: Schedule) -> None:
        """From the current position on, follow ``schedule`` (credits carry over)."""
        if len(schedule.points[0][1]) != len(self.credit):
            raise ValueError("the new schedule must have the same number of sources")
        self.schedule = schedule

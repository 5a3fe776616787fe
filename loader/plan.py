"""The global sample stream, its slices per rank, and merging rank states after a change.

**The stream.** Global position ``g`` = 0, 1, 2, ... is assigned to a source by the mixer
(deterministic, low-discrepancy, following the weight schedule); the ``k``-th draw from source
``s`` is sample ``order(seed, k // N_s, digest_s)[k % N_s]`` (each source has its own epoch
counter). An item is therefore named by ``(s, k)``.

After a world-size or weight change the stream is *re-based*: a ``StreamDef`` is a prefix of
items to deliver first (what old ranks held in their packers, and anything below the
watermark not yet taken), then the regular positions from ``start`` on, minus a small ``skip``
set of positions already delivered above the watermark. A fresh run has an empty prefix,
``start = 0`` and no skips.

**Slices.** Element ``i`` of the stream belongs to rank ``i % world_size``. A rank's state is
the stream definition, how many of its elements it has consumed, a snapshot of the planner
(position, mixer credits, per-source cursors) at its next element -- so resuming is a seek --
and the ids held by its packer.

**Merging** the states of all old ranks (``merge_states``) gives a new stream in which every
item is delivered exactly once: the watermark ``I`` is the smallest next-element index over
the old ranks (everything below it was consumed), the consumed elements above ``I`` become the
skip set, and the packers' pending items go to the front.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from loader.mixing import Mixer, Schedule

__all__ = ["StreamDef", "Snapshot", "Planner", "merge_states", "schedule_to_json", "schedule_from_json"]

Item = tuple[int, int]  # (source index, draw number k)


def schedule_to_json(s: Schedule) -> list[list[Any]]:
    return [[p, list(ws)] for p, ws in s.points]


def schedule_from_json(d: Sequence[Sequence[Any]]) -> Schedule:
    return Schedule.from_points([(int(p), [float(w) for w in ws]) for p, ws in d])


@dataclass
class StreamDef:
    schedule: list[list[Any]]
    prefix: list[Item] = field(default_factory=list)
    start: int = 0
    mixer: dict[str, Any] | None = None  # Mixer state at ``start`` (None: fresh)
    cursors: list[int] | None = None  # draws per source before ``start`` (None: zeros)
    skip: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"schedule": self.schedule, "prefix": [list(p) for p in self.prefix], "start": self.start,
                "mixer": self.mixer, "cursors": self.cursors, "skip": list(self.skip)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> StreamDef:
        return cls(schedule=[[int(p), [float(w) for w in ws]] for p, ws in d["schedule"]],
                   prefix=[(int(s), int(k)) for s, k in d["prefix"]], start=int(d["start"]), mixer=d["mixer"],
                   cursors=None if d["cursors"] is None else [int(c) for c in d["cursors"]],
                   skip=sorted(int(g) for g in d["skip"]))

    @property
    def n_sources(self) -> int:
        return len(self.schedule[0][1])


@dataclass
class Snapshot:
    """The planner just before stream element ``i`` (at regular position ``g``, or in the prefix)."""

    i: int
    g: int | None = None
    mixer: dict[str, Any] | None = None
    cursors: list[int] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"i": self.i, "g": self.g, "mixer": self.mixer, "cursors": self.cursors}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Snapshot:
        return cls(int(d["i"]), None if d["g"] is None else int(d["g"]), d["mixer"],
                   None if d["cursors"] is None else [int(c) for c in d["cursors"]])


class Planner:
    """Yields ``(snapshot, item)`` for the elements of ``stream`` that belong to ``rank``."""

    def __init__(self, stream: StreamDef, rank: int = 0, world_size: int = 1, at: Snapshot | None = None) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.stream, self.rank, self.world = stream, rank, world_size
        self.at = at or Snapshot(0)

    def __iter__(self) -> Iterator[tuple[Snapshot, Item]]:
        st, r, R = self.stream, self.rank, self.world
        i = self.at.i
        while i < len(st.prefix):
            if i % R == r:
                yield Snapshot(i), st.prefix[i]
            i += 1
        n = st.n_sources
        schedule = schedule_from_json(st.schedule)
        if self.at.g is not None:
            g, mstate, cursors = self.at.g, self.at.mixer, list(self.at.cursors or [0] * n)
        else:
            g, mstate, cursors = st.start, st.mixer, list(st.cursors or [0] * n)
        mixer = Mixer(schedule, position=g)
        if mstate is not None:
            mixer.load_state_dict(mstate)
        skip = st.skip
        si = bisect.bisect_left(skip, g)
        while True:
            mine = i % R == r
            snap = Snapshot(i, g, mixer.state_dict(), list(cursors)) if mine else None
            s = mixer.next()
            k = cursors[s]
            cursors[s] += 1
            if si < len(skip) and skip[si] == g:
                si += 1
                g += 1
                continue
            if snap is not None:
                yield snap, (s, k)
            i += 1
            g += 1


def _regular_positions(stream: StreamDef, at: Snapshot, until_i: int) -> dict[int, int]:
    """Stream element index -> regular position, for elements from ``at`` up to ``until_i``."""
    out: dict[int, int] = {}
    if until_i <= max(at.i, len(stream.prefix)):
        return out
    for snap, _ in Planner(stream, 0, 1, at):
        if snap.i >= until_i:
            break
        if snap.g is not None:
            out[snap.i] = snap.g
    return out


def merge_states(states: Sequence[dict[str, Any]], schedule: list[list[Any]] | None = None) -> StreamDef:
    """A new stream that continues ``states`` (all ranks of one world) exactly once.

    ``schedule``: the weights from here on (``None``: keep the old ones)."""
    if not states:
        raise ValueError("no loader states to merge")
    world = int(states[0]["world_size"])
    ranks = sorted(int(s["rank"]) for s in states)
    if len(states) != world or ranks != list(range(world)):
        raise ValueError(f"resuming with a different world size needs the states of all {world} old ranks "
                         f"(got ranks {ranks}); pass the list of every rank's state_dict()")
    streams = {repr(s["stream"]) for s in states}
    if len(streams) != 1:
        raise ValueError("the rank states belong to different streams (saved at different times?)")
    stream = StreamDef.from_json(states[0]["stream"])
    by_rank = sorted(states, key=lambda s: int(s["rank"]))
    nexts = [Snapshot.from_json(s["next"]) for s in by_rank]
    watermark = min(n.i for n in nexts)
    top = max(n.i for n in nexts)
    consumed_above = sorted(i for r, n in enumerate(nexts) for i in range(r, n.i, world) if i >= watermark)
    pending: list[Item] = [(int(a), int(b)) for s in by_rank for a, b in s["pending"]]
    consumed_set = set(consumed_above)
    prefix = pending + [stream.prefix[i] for i in range(watermark, len(stream.prefix)) if i not in consumed_set]
    wm_snap = next(n for n in nexts if n.i == watermark)
    if watermark < len(stream.prefix):
        base = Snapshot(len(stream.prefix))
        pos = _regular_positions(stream, base, top)
        new = StreamDef(stream.schedule, prefix, stream.start, stream.mixer, stream.cursors,
                        sorted(set(stream.skip) | {pos[i] for i in consumed_above if i in pos}))
    else:
        pos = _regular_positions(stream, wm_snap, top)
        g0 = int(wm_snap.g)  # type: ignore[arg-type]
        new = StreamDef(stream.schedule, prefix, g0, wm_snap.mixer, wm_snap.cursors,
                        sorted({g for g in stream.skip if g >= g0} | {pos[i] for i in consumed_above}))
    if schedule is not None:
        new.schedule = schedule
    return new

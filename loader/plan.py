"""The stream of a run: canonical lanes, rank slices with locality, O(1) planning, bounded state.

**Lanes.** The stream is ``P`` canonical *lanes* (``P`` fixed at the first run, like MosaicML
Streaming's canonical nodes: never the physical world size). Every lane mixes the sources by
the same rule (``loader.mixing``: at lane position ``x`` the source and its lane-local draw
number ``k`` are a closed-form function of ``x``; the schedule is read at global position
``x * P``). Each source's draws are cut into *source blocks* of ``S`` draws (``S`` = the
source's mean shard size); block ``b`` belongs to lane ``b % P``, so lane ``p``'s ``k``-th
draw of a source is that source's global draw ``K = ((k // S) * P + p) * S + k % S``, and the
``K``-th draw is sample ``order(seed, K // N)[K % N]`` (``loader.order``). An item is
``(source, K)``; every item belongs to exactly one (lane, position).

**Ranks.** Rank ``r`` of ``R`` owns the contiguous lanes ``[r P / R, (r + 1) P / R)``, so the
ranks of a node own consecutive source blocks: a node reads about ``1 / nodes`` of the shards,
not all of them. A rank takes its lanes in turns of ``T`` positions (round ``q``: positions
``[qT, (q+1)T)`` of each of its lanes in order), so it streams a few shards at a time. Planning
an element costs O(1): one lookup in the block's table, which all lanes share.

**State** is, per owned lane, the next position (a *cursor*, run-length encoded), the rank's
share of the items to deliver first (``prefix``), and what its packer holds. A resume on the
same world size continues identically. A resume on another world size (or with new weights)
*merges* the states of all old ranks in O(P + pending): the lanes' cursors are taken as they
are, the old packers' pending items become the new prefix (dealt round-robin to the new
ranks), and new weights start a new mixing segment at the furthest lane's next position. Nothing grows with the number of steps or resizes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from loader.mixing import Schedule, Segment, block_table

__all__ = ["Stream", "RankPlan", "lanes_of", "merge_states", "items_below", "encode_cursors", "decode_cursors",
           "MIX_BLOCK"]

Item = tuple[int, int]  # (source index, global draw number K)

#: lane positions mixed in one go (the within-block order is low-discrepancy; counts at block
#: ends are exact): a cost knob only -- the stream does not depend on it except through ties
MIX_BLOCK = 4096


def lanes_of(rank: int, world: int, lanes: int) -> range:
    """The lanes rank ``rank`` of ``world`` owns (contiguous)."""
    if world > lanes:
        raise ValueError(f"world size {world} exceeds the stream's {lanes} canonical lanes; set the loader's "
                         f"`lanes` to at least the largest world size at the first run (it cannot change later)")
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in [0, {world})")
    return range(rank * lanes // world, (rank + 1) * lanes // world)


@dataclass(frozen=True)
class Stream:
    """What every rank of a run shares: lanes, turn length, source block sizes, mixing segments."""

    lanes: int
    turn: int
    source_blocks: tuple[int, ...]
    segments: tuple[Segment, ...]  # schedules in global positions; starts and draws in lane positions

    @classmethod
    def fresh(cls, schedule: Schedule, source_blocks: Sequence[int], lanes: int = 1, turn: int = 64) -> Stream:
        if lanes < 1 or turn < 1:
            raise ValueError(f"lanes and turn must be >= 1, got {lanes} and {turn}")
        if len(source_blocks) != schedule.n_sources:
            raise ValueError(f"{len(source_blocks)} source block sizes for {schedule.n_sources} sources")
        return cls(int(lanes), int(turn), tuple(max(1, int(s)) for s in source_blocks),
                   (Segment(0, schedule, (0,) * schedule.n_sources),))

    def to_json(self) -> dict[str, Any]:
        return {"lanes": self.lanes, "turn": self.turn, "source_blocks": list(self.source_blocks),
                "segments": [s.to_json() for s in self.segments]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Stream:
        return cls(int(d["lanes"]), int(d["turn"]), tuple(int(s) for s in d["source_blocks"]),
                   tuple(Segment.from_json(s) for s in d["segments"]))

    @property
    def n_sources(self) -> int:
        return len(self.source_blocks)

    @property
    def schedule(self) -> Schedule:
        """The weights in force now (the last segment's)."""
        return self.segments[-1].schedule

    def segment_for(self, x: int) -> Segment:
        seg = self.segments[0]
        for s in self.segments[1:]:
            if s.start <= x:
                seg = s
        return seg

    def table(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """Lane positions ``[lo, hi)`` (the same in every lane): source and lane-local draw number."""
        parts = [_table(self, m) for m in range(lo // MIX_BLOCK, (hi - 1) // MIX_BLOCK + 1)]
        srcs = np.concatenate([p[0] for p in parts])
        ks = np.concatenate([p[1] for p in parts])
        off = lo - (lo // MIX_BLOCK) * MIX_BLOCK
        return srcs[off: off + hi - lo], ks[off: off + hi - lo]

    def lane_items(self, lane: int, q: int) -> tuple[list[int], list[int]]:
        """Turn ``q`` of ``lane`` as (sources, global draw numbers), plain lists."""
        return _lane_items(self, int(lane), int(q))

    def global_draw(self, lane: int, source: int, k: int) -> int:
        s = self.source_blocks[source]
        return ((k // s) * self.lanes + lane) * s + k % s

    def with_schedule(self, schedule: Schedule, cursors: dict[int, int]) -> Stream:
        """From the furthest lane's next position on, every lane mixes by ``schedule`` (lanes
        behind it reach it within about a turn: they are the same point in time)."""
        if schedule.n_sources != self.n_sources:
            raise ValueError(f"the new weights have {schedule.n_sources} sources, the stream has {self.n_sources}")
        if schedule == self.schedule:
            return self
        start = max(max(cursors.values()), self.segments[-1].start)
        draws = tuple(int(v) for v in self._lane_counts(start))
        segs = tuple(s for s in self.segments if s.start < start) + (Segment(start, schedule, draws),)
        return Stream(self.lanes, self.turn, self.source_blocks, segs)

    def _lane_counts(self, x: int) -> np.ndarray:
        """Draws of each source before lane position ``x``, as the tables deliver them."""
        lo = (x // MIX_BLOCK) * MIX_BLOCK
        draws = _scaled(self.segment_for(lo), self.lanes).counts(lo).copy()
        if x > lo:
            srcs, ks = _table(self, x // MIX_BLOCK)
            for s in range(self.n_sources):
                hit = np.flatnonzero(srcs[: x - lo] == s)
                if len(hit):
                    draws[s] = ks[hit[-1]] + 1
        return draws


@lru_cache(maxsize=64)
def _scaled_cached(seg: Segment, lanes: int) -> Segment:
    pts = tuple((p / lanes, ws) for p, ws in seg.schedule.points)
    return Segment(seg.start, Schedule(pts), seg.draws)  # type: ignore[arg-type]


def _scaled(seg: Segment, lanes: int) -> Segment:
    """The segment with its schedule in lane positions (global position / lanes)."""
    return _scaled_cached(seg, lanes)


@lru_cache(maxsize=64)
def _table(stream: Stream, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Mixing block ``m`` (lane positions ``[m M, (m+1) M)``). Where a segment starts inside the
    block, the positions before it keep the order they had (they may have been delivered) and
    the rest is mixed by the new segment, which continues the draws so far."""
    lo, hi = m * MIX_BLOCK, (m + 1) * MIX_BLOCK
    srcs, ks = block_table(_scaled(stream.segment_for(lo), stream.lanes), lo, hi)
    for seg in stream.segments:
        if lo < seg.start < hi:
            a = seg.start - lo
            s2, k2 = block_table(_scaled(seg, stream.lanes), seg.start, hi)
            srcs, ks = np.concatenate([srcs[:a], s2]), np.concatenate([ks[:a], k2])
    srcs.setflags(write=False)
    ks.setflags(write=False)
    return srcs, ks


@lru_cache(maxsize=1024)
def _lane_items(stream: Stream, lane: int, q: int) -> tuple[list[int], list[int]]:
    srcs, ks = stream.table(q * stream.turn, (q + 1) * stream.turn)
    s = np.asarray(stream.source_blocks, dtype=np.int64)[srcs]
    big = ((ks // s) * stream.lanes + lane) * s + ks % s
    return srcs.tolist(), big.tolist()


def encode_cursors(cursors: dict[int, int]) -> list[list[int]]:
    """Run-length form: ``[[first_lane, count, position], ...]`` over consecutive lanes."""
    out: list[list[int]] = []
    for lane in sorted(cursors):
        c = int(cursors[lane])
        if out and out[-1][0] + out[-1][1] == lane and out[-1][2] == c:
            out[-1][1] += 1
        else:
            out.append([lane, 1, c])
    return out


def decode_cursors(runs: Sequence[Sequence[int]]) -> dict[int, int]:
    out: dict[int, int] = {}
    for first, count, c in runs:
        for lane in range(int(first), int(first) + int(count)):
            out[lane] = int(c)
    return out


class RankPlan:
    """A rank's items from its state: the prefix first, then its lanes turn by turn.

    Iterating yields ``(item, lane, next_position)``; ``lane`` is ``None`` for prefix items.
    Consuming an element sets ``cursors[lane] = next_position``: that is the whole state."""

    def __init__(self, stream: Stream, cursors: dict[int, int], prefix: Sequence[Item] = ()) -> None:
        if not cursors:
            raise ValueError("a rank plan needs at least one lane")
        self.stream, self.cursors, self.prefix = stream, dict(cursors), list(prefix)

    def __iter__(self) -> Iterator[tuple[Item, int | None, int]]:
        for it in self.prefix:
            yield (int(it[0]), int(it[1])), None, 0
        t = self.stream.turn
        cur = dict(self.cursors)
        lanes = sorted(cur)
        q = min(cur.values()) // t
        while True:
            for p in lanes:
                c = cur[p]
                if c >= (q + 1) * t:
                    continue
                srcs, big = self.stream.lane_items(p, q)
                base = q * t
                for o in range(c - base, t):
                    yield (srcs[o], big[o]), p, base + o + 1
                cur[p] = (q + 1) * t
            q += 1


def items_below(stream: Stream, cursors: dict[int, int]) -> list[Item]:
    """Every item at a lane position below its cursor (what a set of states has taken from the
    lanes, delivered or still pending): for checks and tools, O(positions)."""
    out: list[Item] = []
    t = stream.turn
    for lane, c in sorted(cursors.items()):
        for q in range(-(-c // t)):
            srcs, big = stream.lane_items(lane, q)
            n = min(t, c - q * t)
            out += list(zip(srcs[:n], big[:n], strict=True))
    return out


def merge_states(states: Sequence[dict[str, Any]], schedule: Schedule | None = None
                 ) -> tuple[Stream, dict[int, int], list[Item]]:
    """All old ranks' states -> (stream, every lane's cursor, items to deliver first).

    ``schedule``: the weights from here on (``None``: keep them). O(lanes + pending)."""
    if not states:
        raise ValueError("no loader states to merge")
    world = int(states[0]["world_size"])
    ranks = sorted(int(s["rank"]) for s in states)
    if len(states) != world or ranks != list(range(world)):
        raise ValueError(f"resuming with a different world size needs the states of all {world} old ranks "
                         f"(got ranks {ranks}); pass the list of every rank's state_dict()")
    if len({repr(s["stream"]) for s in states}) != 1:
        raise ValueError("the rank states belong to different streams (saved at different times?)")
    stream = Stream.from_json(states[0]["stream"])
    cursors: dict[int, int] = {}
    prefix: list[Item] = []
    for s in sorted(states, key=lambda s: int(s["rank"])):
        mine = decode_cursors(s["cursors"])
        if set(mine) & set(cursors):
            raise ValueError(f"rank {s['rank']}'s lanes overlap another rank's (inconsistent states)")
        cursors.update(mine)
        prefix += [(int(a), int(b)) for a, b in s["prefix"]] + [(int(a), int(b)) for a, b in s["pending"]]
    if sorted(cursors) != list(range(stream.lanes)):
        raise ValueError(f"the states cover {len(cursors)} of the stream's {stream.lanes} lanes")
    if schedule is not None:
        stream = stream.with_schedule(schedule, cursors)
    return stream, cursors, prefix
